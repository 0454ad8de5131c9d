#!/bin/bash
# Bench of the Kubernetes steps on the 5-host lab (3 masters/etcd, 2 workers that are also the
# ex_lb pair), release build, with the real v1.20.2 binaries (see bench/README.md):
#   - `ezk setup <lab> all` from bare hosts to every node Ready and CoreDNS answering (01 02 03
#     10 04 05 06 07), and its no-op re-run;
#   - step by step on a second fresh lab: 04 kube-master, 05 kube-node, 06 network, 07
#     cluster-addon, each first run and no-op re-run (01 02 03 10 run first, untimed), and the
#     time from the start of `setup 07` to the first DNS answer in a pod (dns-first-answer);
#   - `ezk lab up` of 3 and 5 hosts;
#   - the lab's Kubernetes build: from this machine's cache (into a fresh home), and, with
#     COLD=1, from nothing (a private EZK_LAB_DIR: fetch, toolchain, full Go build; ~6 min).
# Usage (root): bench/kube.sh [ROUNDS] (default 2). Env: EZK=path (default: a release build),
# COLD=1, KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
if [ -z "${EZK:-}" ]; then
    cargo build --release --bin ezk >&2
    EZK=$PWD/target/release/ezk
fi
[ "$(id -u)" = 0 ] || { echo "bench needs root (it boots systemd-nspawn lab hosts)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench needs jq" >&2; exit 1; }
WORK=$(mktemp -d /tmp/ezk-kube.XXXXXX)
export EZK_HOME=$WORK
LABS=()
cleanup() {
    for l in "${LABS[@]}"; do "$EZK" lab down "$l" >/dev/null 2>&1 || true; done
    [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
rec() { echo "$*" >> "$WORK/samples"; }
# setup_once LAB STEP NAME: one timed `ezk setup --json`; wall s, changed, max trips/host.
setup_once() {
    local lab=$1 step=$2 name=$3 t0 t1 out
    t0=$(now)
    if ! out=$("$EZK" setup "$lab" "$step" --json 2>"$WORK/err"); then
        echo "ezk setup $lab $step failed:" >&2; tail -30 "$WORK/err" >&2; exit 1
    fi
    t1=$(now)
    rec "$name" "$(echo "$t1 - $t0" | bc)" "$(echo "$out" | jq '[.hosts[].changed] | add')" \
        "$(echo "$out" | jq '[.hosts[].round_trips] | max')"
}
up() { # up NAME HOSTS: timed lab up
    local t0 t1
    LABS+=("$1")
    t0=$(now); "$EZK" lab up "$1" --hosts "$2" >/dev/null; t1=$(now)
    rec "lab-up-$2" "$(echo "$t1 - $t0" | bc)"
}
down() { "$EZK" lab down "$1" >/dev/null; }
ready() { # every node Ready, via the lab's kubectl and the admin kubeconfig
    local k="$WORK/down/bin/kubernetes-server/1.20.2/kubectl --kubeconfig $WORK/clusters/$1/kubectl.kubeconfig"
    [ "$($k get nodes --no-headers | awk '$2 == "Ready"' | wc -l)" = 5 ] \
        || { echo "not every node is Ready on $1:" >&2; $k get nodes >&2; exit 1; }
}

# The store (and the Kubernetes build, from this machine's cache; timed in a fresh home).
t0=$(now); "$EZK" download --k8s-ver lab-debian --from-apt >/dev/null; t1=$(now)
rec "k8s-build-cache-hit+store" "$(echo "$t1 - $t0" | bc)"
if [ -n "${COLD:-}" ]; then
    cold=$(mktemp -d /tmp/ezk-cold.XXXXXX)
    t0=$(now)
    EZK_LAB_DIR=$cold "$EZK" --home "$cold" download --k8s-ver lab-debian --from-apt --only kubernetes-server >/dev/null
    t1=$(now)
    rec "k8s-build-cold" "$(echo "$t1 - $t0" | bc)"
    rm -rf "$cold"
fi

for r in $(seq "$ROUNDS"); do
    up "kb3r$r" 3; down "kb3r$r"
    lab="kbar$r"; up "$lab" 5
    setup_once "$lab" all "all-first"; ready "$lab"
    sleep 1.2
    for i in 1 2 3; do setup_once "$lab" all "all-rerun"; done
    down "$lab"
    lab="kbsr$r"; up "$lab" 5
    for s in 01 02 03 10; do setup_once "$lab" "$s" "pre-$s"; done
    for s in 04 05 06; do
        setup_once "$lab" "$s" "$s-first"
        sleep 1.2
        for i in 1 2 3; do setup_once "$lab" "$s" "$s-rerun"; done
    done
    # A pod waits for DNS; the clock runs from the start of setup 07 to its first answer.
    k="$WORK/down/bin/kubernetes-server/1.20.2/kubectl --kubeconfig $WORK/clusters/$lab/kubectl.kubeconfig"
    $k run dnsprobe --image=ezk.local/busybox:1.35.0 --image-pull-policy=Never --restart=Never -- sleep 3600 >/dev/null
    $k wait --for=condition=Ready pod/dnsprobe --timeout=120s >/dev/null
    t0=$(now)
    setup_once "$lab" 07 "07-first"
    until $k exec dnsprobe -- nslookup kubernetes.default.svc.cluster.local >/dev/null 2>&1; do sleep 0.1; done
    t1=$(now)
    rec "dns-first-answer" "$(echo "$t1 - $t0" | bc)"
    sleep 1.2
    for i in 1 2 3; do setup_once "$lab" 07 "07-rerun"; done
    ready "$lab"
    down "$lab"
done

echo "| measure | median s | changed (all hosts) | round trips/host |"
echo "|---|---|---|---|"
for name in k8s-build-cold k8s-build-cache-hit+store lab-up-3 lab-up-5 all-first all-rerun 04-first 04-rerun 05-first 05-rerun 06-first 06-rerun 07-first 07-rerun dns-first-answer; do
    grep "^$name " "$WORK/samples" >/dev/null || continue
    med=$(grep "^$name " "$WORK/samples" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    ch=$(grep "^$name " "$WORK/samples" | awk '{print $3}' | sort -n | tail -1)
    tr=$(grep "^$name " "$WORK/samples" | awk '{print $4}' | sort -n | tail -1)
    printf '| %s | %.2f | %s | %s |\n' "$name" "$med" "${ch:--}" "${tr:--}"
done
