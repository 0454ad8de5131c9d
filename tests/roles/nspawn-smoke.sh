#!/usr/bin/env bash
# Runs the rendered files of steps 01, 02 and 10 under real systemd: one systemd-nspawn host
# (an overlay on a Debian base image such as `ezk lab` builds), booted in a private network
# namespace holding only lo and a veth pair (198.19.254.11/24 on one end; nothing can leave it).
# It installs what render.py produced, as the engine would, and checks with systemd:
#   - chrony.service runs with the CHRONY_SET_CLOCK=false drop-in (no CAP_SYS_TIME here);
#   - systemd-journald restarts with the journald drop-in;
#   - every prepare `command` task: its cmd succeeds, afterwards its `unless` guard says "done",
#     and a second run of cmd changes nothing (idempotent on its own);
#   - etcd.service (Type=notify, Debian's etcd binary at bin_dir) becomes active and the role's
#     wait_for command reports healthy over TLS;
#   - haproxy.service runs the rendered config; the ex-lb detector finds the interface;
#     keepalived.service takes the VIP and runs the role's `systemctl is-active` check script
#     (succeeds, then fails once haproxy is stopped);
#   - l4lb.service (nginx stream variant) becomes active.
# usage: tests/roles/nspawn-smoke.sh [BASE_IMAGE_DIR]
#   default image: the newest /var/lib/ezk/images/bookworm-*; it needs haproxy keepalived nginx
#   libnginx-mod-stream chrony iproute2 (the `ezk lab` image has them). Root only.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
IMG=${1:-$(ls -dt /var/lib/ezk/images/bookworm-* 2>/dev/null | head -n1)}
[ -n "$IMG" ] && [ -x "$IMG/usr/sbin/haproxy" ] || { echo "no base image with haproxy (give its dir)"; exit 2; }
for t in systemd-nspawn nsenter openssl etcd etcdctl; do
    command -v $t >/dev/null || { echo "missing $t"; exit 2; }
done

W=$(mktemp -d /tmp/ezk-roles-nspawn.XXXXXX)
NS=ezkr-$$
IP=198.19.254.11
VIP=198.19.254.250
NSPID=""
cleanup() {
    if [ -n "$NSPID" ] && kill -0 "$NSPID" 2>/dev/null; then
        kill -TERM "$NSPID"
        for _ in $(seq 1 40); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$NSPID" 2>/dev/null
    fi
    mountpoint -q "$W/root" && umount "$W/root"
    ip netns del "$NS" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
in_host() { nsenter -t "$LEADER" -a -- "$@"; }
active() { [ "$(in_host systemctl is-active "$1" 2>/dev/null)" = active ]; }

# ---------------------------------------------------------------- render for this one host
cat > "$W/inv.yml" <<EOF
groups: {etcd: [$IP], kube_master: [$IP], kube_node: [], ex_lb: [$IP], chrony: [$IP]}
config: {ENABLE_SETTING_HOSTNAME: true}
all: {bin_dir: /opt/kube/bin, ca_dir: /etc/kubernetes/ssl, CHRONY_SET_CLOCK: "false"}
hosts: {$IP: {k8s_nodename: smoke-01, LB_ROLE: master, EX_APISERVER_VIP: $VIP}}
EOF
python3 "$HERE/render.py" "$W/inv.yml" "$W/out" 01 02 10 >/dev/null || { echo "render failed"; exit 1; }
python3 "$HERE/render.py" "$W/inv.yml" "$W/out-nginx" 10 -e EX_LB_IMPL=nginx >/dev/null || exit 1

# ---------------------------------------------------------------- the host
mkdir -p "$W/upper" "$W/work" "$W/root"
mount -t overlay overlay -o "lowerdir=$IMG,upperdir=$W/upper,workdir=$W/work" "$W/root" || exit 1
R=$W/root
echo ezk-smoke > "$R/etc/hostname"
# Not under test and slow or failing here: waiting for a network manager-configured link, and
# sshd (the image has no host keys; `ezk lab` makes them).
ln -sf /dev/null "$R/etc/systemd/system/systemd-networkd-wait-online.service"
ln -sf /dev/null "$R/etc/systemd/system/ssh.service"
ip netns add "$NS"
ip -n "$NS" link set lo up
# A veth pair with both ends in the namespace (this kernel has no dummy driver).
ip link add "ezkr$$a" type veth peer name "ezkr$$b"
ip link set "ezkr$$a" netns "$NS" && ip link set "ezkr$$b" netns "$NS"
ip -n "$NS" link set "ezkr$$a" name lbif0 && ip -n "$NS" link set "ezkr$$b" name lbif1
ip -n "$NS" link set lbif0 up && ip -n "$NS" link set lbif1 up
ip -n "$NS" addr add "$IP/24" dev lbif0

# Files as the engine installs them (templates, copies), plus what cert/binary tasks provide.
for step in 01 02 10; do
    (cd "$W/out/$step/$IP" && find . -type f ! -name _actions.json | while read -r f; do
        mkdir -p "$R/$(dirname "$f")"; cp -p "$f" "$R/$f"; done)
done
mkdir -p "$R/opt/kube/bin" "$R/etc/kubernetes/ssl" "$R/var/lib/etcd"
chmod 700 "$R/var/lib/etcd"
cp /usr/bin/etcd /usr/bin/etcdctl "$R/opt/kube/bin/"
S=$R/etc/kubernetes/ssl
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=etcd-ca -days 2 \
    -keyout "$W/etcd-ca-key.pem" -out "$S/etcd-ca.pem" 2>/dev/null
mkcert() { # name eku san
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$S/$1-key.pem" -out "$W/$1.csr" 2>/dev/null
    { echo "extendedKeyUsage=$2"; [ -n "${3:-}" ] && echo "subjectAltName=$3"; } > "$W/$1.ext"
    openssl x509 -req -in "$W/$1.csr" -CA "$S/etcd-ca.pem" -CAkey "$W/etcd-ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$W/$1.ext" -out "$S/$1.pem" 2>/dev/null
    chmod 600 "$S/$1-key.pem"
}
mkcert etcd-server serverAuth,clientAuth "IP:$IP,IP:127.0.0.1"
mkcert etcd-peer serverAuth,clientAuth "IP:$IP"
mkcert etcd-healthcheck-client clientAuth

# CAP_NET_ADMIN as `ezk lab` hosts have it (nspawn adds it with --network-bridge; keepalived
# needs it to add the VIP).
setsid systemd-nspawn -q -D "$R" --boot --register=no --keep-unit -M "ezkr$$" \
    --network-namespace-path="/run/netns/$NS" --capability=CAP_NET_ADMIN > "$W/nspawn.log" 2>&1 < /dev/null &
NSPID=$!
LEADER=""
for _ in $(seq 1 60); do
    LEADER=$(cat /proc/$NSPID/task/*/children 2>/dev/null | awk '{print $1; exit}')
    [ -n "$LEADER" ] && in_host systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && break
    sleep 0.5
done
state=$(in_host systemctl is-system-running 2>/dev/null)
case $state in running|degraded) ok "nspawn host booted ($state)";; *) echo "host did not boot: $state"; cat "$W/nspawn.log"; exit 1;; esac
in_host systemctl daemon-reload

actions() { # step -> "module<TAB>json args" for every task that runs
    python3 - "$W/out/$1/$IP/_actions.json" <<'EOF'
import json, sys
for role in json.load(open(sys.argv[1])):
    for t in role["tasks"]:
        if not t.get("skipped"):
            print(t["module"] + "\t" + json.dumps(t["args"]))
EOF
}
arg() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }

# ---------------------------------------------------------------- 01: chrony, journald, commands
in_host systemctl restart chrony 2>/dev/null
sleep 1
active chrony && ok "chrony.service runs with the no-clock drop-in" \
    || { bad "chrony.service not active"; in_host journalctl -u chrony -n 10 --no-pager | sed 's/^/      /'; }
in_host systemctl restart systemd-journald && active systemd-journald \
    && ok "systemd-journald restarts with the journald drop-in" || bad "systemd-journald with the drop-in"
while IFS=$'\t' read -r mod args; do
    [ "$mod" = command ] || continue
    cmd=$(arg "$args" cmd); unless=$(arg "$args" unless)
    if ! in_host sh -c "$cmd" >/dev/null 2>&1; then bad "command fails: $cmd"; continue; fi
    before=$(in_host sh -c 'cat /etc/hosts /etc/hostname /etc/fstab' | sha256sum)
    in_host sh -c "$cmd" >/dev/null 2>&1
    after=$(in_host sh -c 'cat /etc/hosts /etc/hostname /etc/fstab' | sha256sum)
    if [ -n "$unless" ] && ! in_host sh -c "$unless" >/dev/null 2>&1; then
        bad "unless still false after the command: $unless"
    elif [ "$before" != "$after" ]; then
        bad "a second run changed files: $cmd"
    else
        ok "command converges, its guard then holds: ${cmd:0:70}"
    fi
done < <(actions 01)
[ "$(in_host hostname)" = smoke-01 ] && ok "hostname is K8S_NODENAME" || bad "hostname: $(in_host hostname)"

# ---------------------------------------------------------------- 02: etcd under systemd
in_host systemctl enable --now etcd >/dev/null 2>&1
health=$(actions 02 | awk -F'\t' '$1 == "wait_for" {print $2}')
health=$(arg "$health" command)
healthy=0
for _ in $(seq 1 30); do in_host sh -c "$health" >/dev/null 2>&1 && { healthy=1; break; }; sleep 1; done
active etcd && [ $healthy = 1 ] && ok "etcd.service active (Type=notify) and the role's health check passes" \
    || { bad "etcd under systemd"; in_host journalctl -u etcd -n 15 --no-pager | sed 's/^/      /'; }

# ---------------------------------------------------------------- 10: haproxy + keepalived, l4lb
in_host systemctl restart haproxy
active haproxy && ok "haproxy.service runs the rendered config" \
    || { bad "haproxy.service"; in_host journalctl -u haproxy -n 10 --no-pager | sed 's/^/      /'; }
det=$(actions 10 | awk -F'\t' '$1 == "command" {print $2}')
in_host sh -c "$(arg "$det" cmd)" && in_host sh -c "$(arg "$det" unless)" \
    && [ "$(cat "$R/etc/keepalived/ezk-lb-if.conf")" = '$LB_IF=lbif0' ] \
    && ok "detector wrote \$LB_IF=lbif0, its guard then holds" || bad "detector: $(cat "$R/etc/keepalived/ezk-lb-if.conf" 2>&1)"
in_host systemctl restart keepalived
vip=0
for _ in $(seq 1 20); do [ -n "$(ip -n "$NS" -o addr show to $VIP)" ] && { vip=1; break; }; sleep 0.5; done
[ $vip = 1 ] && active keepalived && ok "keepalived.service holds the VIP" \
    || { bad "keepalived: no VIP"; in_host journalctl -u keepalived -n 15 --no-pager | sed 's/^/      /'; }
in_host bash -c "exec 3<>/dev/tcp/$VIP/8443" 2>/dev/null && ok "VIP:8443 accepts connections (the role's wait_for)" \
    || bad "VIP:8443 refused"
sleep 2
in_host journalctl -u keepalived --no-pager | grep -q 'VRRP_Script(ezk_lb_active) succeeded' \
    && ok "keepalived runs the check script (systemctl is-active haproxy) and it succeeds" \
    || { bad "check script never succeeded"; in_host journalctl -u keepalived -n 15 --no-pager | sed 's/^/      /'; }
in_host systemctl stop haproxy
failed=0
for _ in $(seq 1 20); do
    in_host journalctl -u keepalived --no-pager | grep -q 'VRRP_Script(ezk_lb_active) failed' && { failed=1; break; }
    sleep 0.5
done
[ $failed = 1 ] && ok "the check script fails once haproxy is stopped" || bad "check script did not notice haproxy stopped"
(cd "$W/out-nginx/10/$IP" && find . -type f ! -name _actions.json | while read -r f; do
    mkdir -p "$R/$(dirname "$f")"; cp -p "$f" "$R/$f"; done)
in_host systemctl daemon-reload
in_host systemctl start l4lb
active l4lb && ok "l4lb.service (nginx stream) runs the rendered config" \
    || { bad "l4lb.service"; in_host journalctl -u l4lb -n 10 --no-pager | sed 's/^/      /'; }

echo
[ $fails -eq 0 ] && echo "all nspawn smoke checks passed" || echo "$fails check(s) failed"
[ $fails -eq 0 ]
