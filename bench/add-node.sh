#!/bin/bash
# Bench of `ezk add-node` and `ezk del-node` on the Kubernetes lab (5 hosts in the inventory: 3
# masters/etcd, 2 workers that are also the ex_lb pair; one spare host, `ezk lab up --spare 1`),
# with the real v1.20.2 binaries: per round, `setup all` (untimed), then the spare host added
# (wall time from start to the node Ready, which add-node waits for), then removed again.
# Reported per operation: wall seconds (median), hosts contacted (the hosts of every step's
# recap), tasks changed on the old hosts and on the added/removed host (max over rounds).
# Usage (root): bench/add-node.sh [ROUNDS] (default 1). Env: EZK=path (default: a release
# build), KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
if [ -z "${EZK:-}" ]; then
    cargo build --release --bin ezk >&2
    EZK=$PWD/target/release/ezk
fi
[ "$(id -u)" = 0 ] || { echo "bench needs root (it boots systemd-nspawn lab hosts)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench needs jq" >&2; exit 1; }
WORK=$(mktemp -d /tmp/ezk-addnode.XXXXXX)
export EZK_HOME=$WORK
LABS=()
cleanup() {
    for l in "${LABS[@]}"; do "$EZK" lab down "$l" >/dev/null 2>&1 || true; done
    [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
rec() { echo "$*" >> "$WORK/samples"; }
# timed NAME NEW_IP ARGS...: one timed `ezk ARGS --json`; wall s, hosts contacted, changed on
# the other hosts, changed on NEW_IP. del-node prints two documents (the host's clean, then the
# others' steps): jq -s reads them all.
timed() {
    local name=$1 ip=$2 t0 t1 out
    shift 2
    t0=$(now)
    if ! out=$("$EZK" "$@" --json 2>"$WORK/err"); then
        echo "ezk $* failed:" >&2; tail -30 "$WORK/err" >&2; exit 1
    fi
    t1=$(now)
    local steps='[.[] | (.steps // [.])[]]'
    rec "$name" "$(echo "$t1 - $t0" | bc)" \
        "$(echo "$out" | jq -s "$steps | map(.hosts | keys[]) | unique | length")" \
        "$(echo "$out" | jq -s --arg ip "$ip" "$steps | map(.hosts | to_entries[] | select(.key != \$ip) | .value.changed) | add")" \
        "$(echo "$out" | jq -s --arg ip "$ip" "$steps | map(.hosts[\$ip].changed // 0) | add")"
}

"$EZK" download --k8s-ver lab-debian --from-apt >/dev/null
for r in $(seq "$ROUNDS"); do
    lab="ban$r"
    LABS+=("$lab")
    out=$("$EZK" lab up "$lab" --hosts 5 --spare 1)
    spare=$(echo "$out" | awk '/spare: not in the inventory/ {print $1, $2}')
    name=${spare%% *}; ip=${spare##* }
    "$EZK" setup "$lab" all >/dev/null 2>"$WORK/err" || { tail -30 "$WORK/err" >&2; exit 1; }
    timed add-node "$ip" add-node "$lab" "$ip" "k8s_nodename=$name"
    timed add-node-rerun "$ip" add-node "$lab" "$ip"
    timed del-node "$ip" del-node "$lab" "$ip" --yes
    "$EZK" lab down "$lab" >/dev/null
done

echo "| operation | median s | hosts contacted | changed on the other hosts | changed on the host |"
echo "|---|---|---|---|---|"
for name in add-node add-node-rerun del-node; do
    grep "^$name " "$WORK/samples" >/dev/null || continue
    med=$(grep "^$name " "$WORK/samples" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    max() { grep "^$name " "$WORK/samples" | awk -v c="$1" '{print $c}' | sort -n | tail -1; }
    printf '| %s | %.1f | %s | %s | %s |\n' "$name" "$med" "$(max 3)" "$(max 4)" "$(max 5)"
done
