#!/usr/bin/env bash
# bench/scale.sh [WORKERS...]: planning cost against the host count, no host contacted.
#
# For each count (default 10 100 1000 3000 4995: 5000 hosts, the most one cluster may have) it writes a cluster from the multi-node example
# (3 masters = etcd, 2 ex_lb, chrony, ...) with that many workers in [kube_node] (addresses in
# 100.64.0.0/10, never contacted), then times `ezk check` with /usr/bin/time -v (wall, max
# RSS): the inventory validated and every step of the shipped roles planned for every host.
# That is the planning `setup all --plan` does before it connects (`--plan` then gathers over
# SSH), without file contents (certificates, binaries: `check` names them, `render` needs a
# filled artifact store). Needs a release build (made unless EZK= names a binary).
# Output: one markdown table row per count, as in bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(10 100 1000 3000 4995)
if [ -z "${EZK:-}" ]; then
    (cd "$here" && cargo build --release --quiet)
    EZK="$here/target/release/ezk"
fi
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# $1 label, rest: command. Prints "wall_s cpu_s max_rss_MB" (the run must succeed). CPU time
# (user + system) is the steadier figure on a machine shared with other work.
measure() {
    local label=$1; shift
    if ! /usr/bin/time -v -o "$work/time" "$@" >"$work/out" 2>&1; then
        echo "$label failed:" >&2
        tail -20 "$work/out" >&2
        exit 1
    fi
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
        /User time \(seconds\)/ { cpu += $2 }
        /System time \(seconds\)/ { cpu += $2 }
        /Maximum resident set size/ { rss = $2 / 1024 }
        END { printf "%.2f %.2f %.0f\n", wall, cpu, rss }' "$work/time"
}

printf '| hosts | workers | ezk check wall s | CPU s | max RSS MB |\n'
printf '|---|---|---|---|---|\n'
for n in "${counts[@]}"; do
    home="$work/home-$n"
    mkdir -p "$home"
    c="w$n"
    "$EZK" --home "$home" new "$c" >/dev/null
    hosts="$home/clusters/$c/hosts"
    grep -qF "198.51.100.21 k8s_nodename='worker-01'" "$hosts" || { echo "the example's workers changed: adapt bench/scale.sh" >&2; exit 1; }
    awk -v n="$n" '
        /^198\.51\.100\.2[12] k8s_nodename=.worker-0[12].$/ {
            if (!done) for (i = 0; i < n; i++) printf "100.%d.%d.%d k8s_nodename=%cworker-%d%c\n", 64 + int(i / 62500), int(i / 250) % 250, i % 250 + 1, 39, i, 39
            done = 1; next
        }
        { print }' "$hosts" >"$hosts.new"
    mv "$hosts.new" "$hosts"
    # A pod subnet for every node (ezk check refuses a CLUSTER_CIDR too small for the node
    # count): 172.16.0.0/12 in /25s holds 8192 nodes.
    sed -i 's|^CLUSTER_CIDR=.*|CLUSTER_CIDR="172.16.0.0/12"|' "$hosts"
    sed -i 's|^NODE_CIDR_LEN:.*|NODE_CIDR_LEN: 25|' "$home/clusters/$c/config.yml"
    grep -q '^NODE_CIDR_LEN: 25$' "$home/clusters/$c/config.yml" || { echo "the example's NODE_CIDR_LEN changed: adapt bench/scale.sh" >&2; exit 1; }
    total=$(awk '/^\[/ { g = $0 } g != "" && /^[0-9]/ { print $1 }' "$hosts" | sort -u | wc -l)
    read -r cw cc cr < <(measure check "$EZK" --home "$home" check "$c")
    printf '| %s | %s | %s | %s | %s |\n' "$total" "$n" "$cw" "$cc" "$cr"
    rm -rf "$home"
done
