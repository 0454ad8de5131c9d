#!/usr/bin/env bash
# bench/scale-lab.sh [HOSTS]: step 01 on a lab of real hosts (default 100), as issue "scale"
# asks: `ezk lab up` of HOSTS real systemd nspawn hosts, then `setup 01` (prepare + chrony)
# first run, its no-op re-run with a fresh SSH handshake per host (the default), the no-op with
# kept SSH masters (`--ssh-persist`: the first run makes the masters, the next reuses them), and
# `setup 01 --plan` over kept masters. Each line: wall s, CPU s of ezk and its ssh clients
# (user + system; the hosts' own work is not in it), ezk's max RSS, SSH handshakes, the most
# round trips to one host, tasks changed. Needs root and a release build (made unless EZK=
# names a binary). The hosts share this machine's CPU with ezk: on 2 cores, 100 hosts'
# sshd and bash are most of the wall time. Output: markdown rows, as in bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
if [ -z "${EZK:-}" ]; then
    cargo build --release --quiet --bin ezk
    EZK=$PWD/target/release/ezk
fi
[ "$(id -u)" = 0 ] || { echo "bench needs root (it boots systemd-nspawn lab hosts)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench needs jq" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d /tmp/ezk-scale-lab.XXXXXX)
export EZK_HOME=$work
lab=sl$$
cleanup() { "$EZK" lab down "$lab" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# row LABEL JSON? CMD...: one timed run; JSON=1 reads the recap (ezk --json) for counts.
row() {
    local label=$1 json=$2; shift 2
    if ! /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err"; then
        echo "$label failed:" >&2; tail -20 "$work/err" >&2; exit 1
    fi
    read -r wall u s rss <"$work/time"
    local counts=" | | "
    if [ "$json" = 1 ]; then
        counts=$(jq -r '"\([.hosts[].handshakes] | add) | \([.hosts[].round_trips] | max) | \([.hosts[].changed] | add)"' "$work/out")
    fi
    printf '| %s | %s | %.2f | %.2f | %.0f | %s |\n' "$label" "$n" "$wall" "$(echo "$u + $s" | bc)" "$((rss / 1024))" "$counts"
}

printf '| run | hosts | wall s | ezk CPU s | max RSS MB | handshakes | max trips/host | changed |\n'
printf '|---|---|---|---|---|---|---|---|\n'
row "lab up" 0 "$EZK" lab up "$lab" --hosts "$n"
"$EZK" download "$lab" --from-apt >/dev/null
row "setup 01, first run" 1 "$EZK" setup "$lab" 01 --json
row "setup 01, no-op (fresh handshakes)" 1 "$EZK" setup "$lab" 01 --json
row "setup 01, no-op, --ssh-persist 120 (makes masters)" 1 "$EZK" setup "$lab" 01 --json --ssh-persist 120
row "setup 01, no-op, --ssh-persist 120 (kept masters)" 1 "$EZK" setup "$lab" 01 --json --ssh-persist 120
row "setup 01 --plan, kept masters" 0 "$EZK" setup "$lab" 01 --plan --ssh-persist 120
row "ezk check (no host)" 0 "$EZK" check "$lab"
printf '\n(load average at the end: %s)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
