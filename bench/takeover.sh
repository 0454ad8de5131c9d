#!/bin/bash
# Bench of taking over a kubeasz-built etcd (README, "Taking over a cluster kubeasz built"):
# the lab test `takeover::kubeasz_etcd_is_taken_over_without_an_outage`, built in release, lays
# 3 fresh lab hosts out as kubeasz 3.x does and times `ezk setup <c> 02 --allow-client-cutoff`
# (the whole process: plan, the client cut-off check, the rolling restart of the three members,
# each waited for) and its no-op re-run. Usage (root): bench/takeover.sh [ROUNDS] (default 3);
# prints every round's timing lines and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench needs root (it boots systemd-nspawn lab hosts)" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
    cargo test --release --test lab -- takeover 2>&1 | tee -a "$OUT" | grep -E "timing: setup 02|test takeover" >&2
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
first=$(grep -o 'adopted cluster [0-9.]*s' "$OUT" | grep -o '[0-9.]*' | median)
again=$(grep -o 're-run on the adopted cluster [0-9.]*s' "$OUT" | grep -o '[0-9.]*' | median)
echo "setup 02 on an adopted cluster (3 hosts, rolling restart): median ${first} s; re-run ${again} s (${ROUNDS} rounds)"
