#!/bin/bash
# Bench of the real steps on lab hosts, against kubeasz's figures (see bench/README.md):
#   - 01 prepare, 02 etcd and 03 runtime on a 3-host lab, then `ezk destroy` of it; 10 ex-lb on
#     a 5-host lab (after its 01):
#     first run and no-op re-run wall time, changed count, round trips per host (from --json);
#   - certificates: `ezk certs --issue` on a fresh cluster, and `ezk kca-renew`.
# Each first run gets a fresh lab (one per round); re-runs are three per round; the table shows
# the median over all rounds. Usage (root): bench/steps.sh [ROUNDS] (default 3).
# Env: EZK=path (default: a release build, made here if missing), KEX=algos (passed as --kex),
#      STEPS_KEEP=1 keeps the work dir (run logs with per-host timelines: clusters/*/logs/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
if [ -z "${EZK:-}" ]; then
    cargo build --release --bin ezk >&2
    EZK=$PWD/target/release/ezk
fi
[ "$(id -u)" = 0 ] || { echo "bench needs root (it boots systemd-nspawn lab hosts)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench needs jq" >&2; exit 1; }
WORK=$(mktemp -d /tmp/ezk-steps.XXXXXX)
export EZK_HOME=$WORK
LABS=()
cleanup() {
    for l in "${LABS[@]}"; do "$EZK" lab down "$l" >/dev/null 2>&1 || true; done
    [ -n "${STEPS_KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
KEXARG=()
[ -n "${KEX:-}" ] && KEXARG=(--kex "$KEX")

now() { date +%s.%N; }
# rec NAME SECONDS [CHANGED TRIPS]: one sample line in $WORK/samples.
rec() { echo "$*" >> "$WORK/samples"; }

# setup_once LAB STEP KIND: one timed `ezk setup --json`; records wall s, changed, max trips/host.
setup_once() {
    local lab=$1 step=$2 kind=$3 t0 t1 out
    t0=$(now)
    if ! out=$("$EZK" setup "$lab" "$step" --json "${KEXARG[@]}" 2>"$WORK/err"); then
        echo "ezk setup $lab $step failed:" >&2; cat "$WORK/err" >&2; echo "$out" >&2; exit 1
    fi
    t1=$(now)
    local changed trips conn
    changed=$(echo "$out" | jq '[.hosts[].changed] | add')
    trips=$(echo "$out" | jq '[.hosts[].round_trips] | max')
    conn=$(echo "$out" | jq '[.hosts[].connect_seconds] | add / length')
    rec "$step-$kind" "$(echo "$t1 - $t0" | bc)" "$changed" "$trips" "$conn"
}

timed() { # NAME CMD...: wall time of a local command
    local name=$1 t0 t1; shift
    t0=$(now); "$@" >/dev/null; t1=$(now)
    rec "$name" "$(echo "$t1 - $t0" | bc)"
}

# steps_of LAB STEP...: per step, the first run, a re-run right after it ("rerun0": files the
# first run wrote are less than a second old, so their checksums are not yet remembered, see
# src/exec/sums.rs), then, a second later, three re-runs ("rerun": the first of them records
# the checksums, the median is a remembered-checksum run, as any later re-run is).
steps_of() {
    local lab=$1 step; shift
    for step in "$@"; do
        setup_once "$lab" "$step" first
        setup_once "$lab" "$step" rerun0
        sleep 1.2
        for _ in 1 2 3; do setup_once "$lab" "$step" rerun; done
    done
}

# lab_up LAB N: boot a lab; a host that fails to boot (seen on a loaded machine: a unit of
# the image failing, /run/nologin left behind) gets the lab rebuilt, once.
lab_up() {
    local try
    for try in 1 2; do
        "$EZK" lab up "$1" --hosts "$2" --timeout 90 >/dev/null 2>"$WORK/err" && return 0
        echo "lab $1 did not come up (try $try): $(tail -1 "$WORK/err")" >&2
        "$EZK" lab down "$1" >/dev/null 2>&1 || true
    done
    return 1
}

download() { "$EZK" download "$1" --from-apt >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }; }

for r in $(seq 1 "$ROUNDS"); do
    echo "round $r of $ROUNDS" >&2
    lab=s3r$r$$
    LABS+=("$lab")
    lab_up "$lab" 3
    download "$lab"
    rm -rf "$WORK/clusters/$lab/ssl"
    timed certs-issue "$EZK" certs "$lab" --issue --local
    timed kca-renew "$EZK" kca-renew "$lab"
    steps_of "$lab" 01 02 03
    timed destroy "$EZK" destroy "$lab" --yes
    "$EZK" lab down "$lab" >/dev/null
    lab=s5r$r$$
    LABS+=("$lab")
    lab_up "$lab" 5
    download "$lab"
    setup_once "$lab" 01 first5
    steps_of "$lab" 10
    [ -n "${STEPS_KEEP:-}" ] || "$EZK" lab down "$lab" >/dev/null
done

echo "ezk $("$EZK" --version | cut -d' ' -f2) ($EZK), kex: ${KEX:-OpenSSH default}, $ROUNDS round(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/samples" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append(f[1:])
print(f"{'measure':<14} {'n':>3} {'median s':>9} {'min s':>7} {'max s':>7} {'changed':>8} {'trips/host':>10} {'connect s/host':>14}")
for name, v in rows.items():
    t = [float(x[0]) for x in v]
    col = lambda i: "/".join(sorted({x[i] for x in v if len(x) > i})) or "-"
    conn = [float(x[3]) for x in v if len(x) > 3]
    c = f"{statistics.median(conn):.3f}" if conn else "-"
    print(f"{name:<14} {len(t):>3} {statistics.median(t):>9.3f} {min(t):>7.3f} {max(t):>7.3f} {col(1):>8} {col(2):>10} {c:>14}")
PY
