#!/usr/bin/env bash
# ezk's main job end to end on a local lab, as the README's quickstart runs it (as root):
# a 5-host lab of real systemd hosts, the artifact store filled from Debian (pinned packages,
# and Kubernetes v1.20.2 built from Debian's own source package, once per machine), then
# `ezk setup demo all`: 01 prepare, 02 etcd (3-member TLS cluster), 03 runtime (containerd),
# 10 ex-lb (haproxy + keepalived VIP), 04 kube-master (3 apiservers behind the VIP), 05 kube-node
# and 06 network (every host a Ready node, host-gw routes). Then `kubectl get nodes`, a pod on
# every node fetching a page from another node's pod, and a re-run of `all` that changes nothing.
# The lab stays up to explore; `target/release/ezk lab down demo` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-demo}
bash tests/deps.sh
cargo build --release --quiet
ezk="$PWD/target/release/ezk"
export EZK_HOME="$PWD"             # clusters/<name>/ and the store down/ live in this checkout
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# The lab's kubectl (v1.20.2, from the store) with the admin kubeconfig ezk wrote for this
# machine (server: the ex-lb VIP).
kubectl() { "$PWD"/down/bin/kubernetes-server/1.20.2/kubectl --kubeconfig "clusters/$name/kubectl.kubeconfig" "$@"; }

step "lab: 5 real systemd hosts on a private bridge"
"$ezk" lab status "$name" >/dev/null 2>&1 || "$ezk" lab up "$name" --hosts 5
step "check the generated inventory (no host contacted)"
"$ezk" check "$name" | tail -n 3
step "artifact store: Debian's etcd/containerd/runc/CNI, Kubernetes v1.20.2 from Debian's source, images"
"$ezk" download "$name" --from-apt | tail -n 5
step "ezk setup $name all: 01 prepare, 02 etcd, 03 runtime, 10 ex-lb, 04 kube-master, 05 kube-node, 06 network, 07 cluster-addon"
time "$ezk" setup "$name" all | grep -E '^(== step|HOST|[0-9.]+ +[0-9])'

step "the cluster, from this machine (clusters/$name/kubectl.kubeconfig, through the VIP)"
kubectl get nodes -o wide
step "a pod on every node (busybox made from Debian's busybox-static, no registry)"
kubectl apply -f - <<'EOF'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: demo-web, namespace: default}
spec:
  selector: {matchLabels: {app: demo-web}}
  template:
    metadata: {labels: {app: demo-web}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
      - name: web
        image: ezk.local/busybox:1.35.0
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: demo-web, namespace: default}
spec:
  selector: {app: demo-web}
  ports: [{name: http, port: 80, targetPort: 8080}]
EOF
kubectl rollout status daemonset/demo-web --timeout=120s
kubectl get pods -o wide
first=$(kubectl get pods -l app=demo-web -o jsonpath='{.items[0].metadata.name}')
other=$(kubectl get pods -l app=demo-web -o jsonpath='{.items[-1].status.podIP}')
step "pod $first fetches http://$other:8080/ (a pod on another node, over the host-gw routes)"
kubectl exec "$first" -- timeout 5 wget -q -O- "http://$other:8080/"
step "cluster DNS (CoreDNS, step 07): pod $first fetches http://demo-web/ by the Service's name"
kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide
kubectl exec "$first" -- nslookup demo-web.default.svc.cluster.local
kubectl exec "$first" -- timeout 5 wget -q -O- "http://demo-web/"

step "no-op re-run of all: nothing changes, nothing restarts"
time "$ezk" setup "$name" all | grep -E '^(HOST|[0-9.]+ +[0-9])' | tail -n 6
echo
echo "lab $name is up: kubectl is $PWD/down/bin/kubernetes-server/1.20.2/kubectl --kubeconfig clusters/$name/kubectl.kubeconfig"
echo "remove it with: $ezk destroy $name --yes; $ezk lab down $name"
