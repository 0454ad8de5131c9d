#!/usr/bin/env bash
# ezk's main job end to end on a local lab, as the README's quickstart runs it (as root):
# a 5-host lab of real systemd hosts, the artifact store filled from Debian's pinned packages,
# then steps 01 prepare, 02 etcd (3-member TLS cluster), 03 runtime (containerd) and 10 ex-lb
# (haproxy + keepalived VIP), a check of etcd over TLS and of containerd's CRI service, and a
# re-run that changes nothing.
# The lab stays up to explore; `target/release/ezk lab down demo` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-demo}
bash tests/deps.sh
cargo build --release --quiet
ezk="$PWD/target/release/ezk"
export EZK_HOME="$PWD"             # clusters/<name>/ and the store down/ live in this checkout
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "lab: 5 real systemd hosts on a private bridge"
"$ezk" lab status "$name" >/dev/null 2>&1 || "$ezk" lab up "$name" --hosts 5
step "check the generated inventory (no host contacted)"
"$ezk" check "$name" | tail -n 3
step "artifact store: Debian's etcd/containerd/runc/kubectl builds, sha256-pinned"
"$ezk" download "$name" --from-apt | tail -n 2
for s in 01 02 03 10; do
  step "ezk setup $name $s"
  time "$ezk" setup "$name" "$s"
done

ssl="clusters/$name/ssl"
ips=$(awk '/^\[etcd\]/{f=1;next} /^\[/{f=0} f && $1 ~ /^[0-9]/{print $1}' "clusters/$name/hosts")
eps=$(for ip in $ips; do printf 'https://%s:2379,' "$ip"; done)
step "etcd over TLS from this machine (client cert from $ssl)"
etcdctl --endpoints="${eps%,}" --cacert="$ssl/etcd-ca.pem" --cert="$ssl/etcd-client.pem" \
  --key="$ssl/etcd-client-key.pem" endpoint health --cluster
step "containerd on each Kubernetes host: version and CRI plugin (over ssh)"
nodes=$(awk '/^\[kube_(master|node)\]/{f=1;next} /^\[/{f=0} f && $1 ~ /^[0-9]/{print $1}' "clusters/$name/hosts" | sort -u)
for ip in $nodes; do
  printf '%s: ' "$ip"
  ssh -i "clusters/$name/ssh/id_ed25519" -o UserKnownHostsFile="clusters/$name/known_hosts" \
    -o StrictHostKeyChecking=yes "root@$ip" \
    "/opt/kube/bin/containerd-bin/ctr version | awk '/Server/{s=1} s && /Version/{printf \"containerd %s, \", \$2; exit}';
     /opt/kube/bin/containerd-bin/ctr plugins ls | awk '\$2==\"cri\"{print \"CRI plugin \" \$NF}'"
done
step "no-op re-run of 02: nothing changes, nothing restarts"
time "$ezk" setup "$name" 02
echo
echo "lab $name is up: ssh with the command 'ezk lab up' printed; remove it with: $ezk lab down $name"
