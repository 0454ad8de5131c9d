#!/usr/bin/env bash
# Renders every role of steps 01, 02 and 10 for the 5-host lab inventory (tests/roles/lab5.yml)
# and checks each rendered file with the real tool that will read it:
#   systemd-analyze verify (units, drop-ins), haproxy -c, nginx -t, keepalived -t, chronyd -p,
#   sh -n (shell files);
# then runs the rendered configs for real on loopback (127.0.0.0/8 only):
#   - etcd from the rendered unit's ExecStart (Debian's etcd 3.4, certs made here with openssl):
#     the role's own wait_for command reports healthy, put/get works, a client without a
#     certificate is refused, no listener answers plaintext, the WAL dir is used;
#   - haproxy and nginx (stream) from the rendered configs forward to three backends;
#   - VRRP failover: the rendered keepalived configs of two LB hosts run in two network
#     namespaces joined by a veth pair (198.19.255.0/24, no link to the host's network), the
#     role's detector finds their interface; the VIP sits on the LB_ROLE=master host, moves to
#     the backup when the master's LB check fails and comes back when it recovers. The check
#     command (`systemctl is-active`) is replaced by a test double testing a flag file, since
#     the namespaces have no systemd.
# Needs: python3 with PyYAML and minijinja (pip install minijinja==2.24.0; Jinja2 is the
# fallback), and Debian's etcd-server etcd-client haproxy nginx libnginx-mod-stream keepalived
# chrony openssl curl (installed, services not started).
# usage: tests/roles/validate-templates.sh     (exit 0 = every check passed)
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RENDER="python3 $HERE/render.py"
TMP=$(mktemp -d /tmp/ezk-roles-validate.XXXXXX)
PIDS=()
NETNS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
# check DESCRIPTION CMD...: passes when CMD exits 0 and prints nothing but expected chatter.
check() {
    local what=$1; shift
    local out
    if out=$("$@" 2>&1) && ! grep -qiE 'warn|unknown|error|ignoring' <<<"$out"; then
        ok "$what"
    else
        bad "$what"; sed 's/^/      /' <<<"$out"
    fi
}

for t in systemd-analyze haproxy nginx keepalived chronyd etcd etcdctl openssl curl; do
    command -v "$t" >/dev/null || { echo "missing $t (see the header of $0)"; exit 2; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Any real interface of this machine that can carry VRRP (keepalived -t checks it exists).
any_iface=$(ip -o link | awk -F': ' '$2 != "lo" && /MULTICAST/ { sub(/@.*/, "", $2); print $2; exit }')

# ---------------------------------------------------------------- render
R=$TMP/render
mkdir -p "$TMP/bin" && ln -s /usr/bin/etcd "$TMP/bin/etcd" && ln -s /usr/bin/etcdctl "$TMP/bin/etcdctl"
variants=(
    "default|"
    "nginx|-e EX_LB_IMPL=nginx"
    "options|-e LB_IF=$any_iface -e ETCD_WAL_DIR=/var/lib/etcd-wal -e CHRONY_SET_CLOCK=true -e local_network=198.18.1.0/24 -e PROXY_MODE=iptables -e CLUSTER_STATE=existing"
    "localbin|-e bin_dir=$TMP/bin"
)
for v in "${variants[@]}"; do
    name=${v%%|*}; args=${v#*|}
    # shellcheck disable=SC2086
    check "render steps 01 02 10 ($name)" $RENDER "$HERE/lab5.yml" "$R/$name" 01 02 10 $args
done
# A wrong EX_LB_IMPL must stop rendering with the variable's name in the message.
if out=$($RENDER "$HERE/lab5.yml" "$TMP/r-bad" 10 -e EX_LB_IMPL=envoy 2>&1); then
    bad "EX_LB_IMPL=envoy is refused"
else
    grep -q EX_LB_IMPL_must_be_haproxy_or_nginx <<<"$out" && ok "EX_LB_IMPL=envoy is refused" \
        || { bad "EX_LB_IMPL=envoy is refused (message)"; echo "      $out"; }
fi

# ---------------------------------------------------------------- static checks per file
for f in "$R"/localbin/02/*/etc/systemd/system/etcd.service "$R"/nginx/10/*/etc/systemd/system/l4lb.service; do
    check "systemd-analyze verify ${f#"$R"/}" systemd-analyze verify "$f"
done
for f in "$R"/*/01/*/etc/systemd/system/chrony.service.d/10-ezk-no-clock.conf; do
    u=$TMP/units.$RANDOM; mkdir -p "$u/chrony.service.d"
    cp /lib/systemd/system/chrony.service "$u/" && cp "$f" "$u/chrony.service.d/"
    check "systemd-analyze verify chrony.service + ${f#"$R"/}" env SYSTEMD_UNIT_PATH="$u:" systemd-analyze verify chrony.service
done
for f in "$R"/*/10/*/etc/haproxy/haproxy.cfg; do
    check "haproxy -c ${f#"$R"/}" haproxy -c -q -f "$f"
done
for f in "$R"/*/10/*/etc/l4lb/l4lb.conf; do
    check "nginx -t ${f#"$R"/}" nginx -q -t -c "$f"
done
printf '$LB_IF=%s\n' "$any_iface" > "$TMP/lb-if.conf"
for f in "$R"/*/10/*/etc/keepalived/keepalived.conf; do
    sed "s#/etc/keepalived/ezk-lb-if.conf#$TMP/lb-if.conf#" "$f" > "$TMP/ka.conf"
    check "keepalived -t ${f#"$R"/}" keepalived -t -f "$TMP/ka.conf"
done
# A single ex_lb host has no VRRP peer: keepalived must accept its config too.
cat > "$TMP/one-lb.yml" <<EOF
groups: {etcd: [198.18.1.11], kube_master: [198.18.1.11], kube_node: [], ex_lb: [198.18.1.12], chrony: []}
config: {}
all: {}
hosts: {198.18.1.12: {LB_ROLE: master, EX_APISERVER_VIP: 198.18.1.250}}
EOF
if $RENDER "$TMP/one-lb.yml" "$TMP/one-lb" 10 -e "LB_IF=$any_iface" >/dev/null; then
    check "keepalived -t (a single ex_lb host)" keepalived -t -f "$TMP/one-lb/10/198.18.1.12/etc/keepalived/keepalived.conf"
else
    bad "render of a single ex_lb host"
fi
for f in "$R"/*/01/*/etc/chrony/chrony.conf; do
    check "chronyd -p ${f#"$R"/}" chronyd -p -f "$f"
done
for f in "$R"/default/01/198.18.1.11/etc/profile.d/ezk-path.sh "$ROOT"/roles/ex-lb/files/ezk-detect-lb-if; do
    check "sh -n ${f##*/}" sh -n "$f"
done
# systemd config drop-ins: every key is one the daemon knows (its parser table is in the binary).
keys_known() { # file binary prefix
    local k missing="" table
    table=$(strings "$2")
    for k in $(grep -E '^[A-Za-z]+=' "$1" | cut -d= -f1); do
        grep -qx "$3$k" <<<"$table" || missing="$missing $k"
    done
    [ -z "$missing" ] || { echo "unknown keys:$missing"; return 1; }
}
check "journald drop-in keys known to systemd-journald" \
    keys_known "$R/default/01/198.18.1.11/etc/systemd/journald.conf.d/95-k8s-journald.conf" /lib/systemd/systemd-journald "Journal."
check "system.conf drop-in keys known to systemd" \
    keys_known "$R/default/01/198.18.1.11/etc/systemd/system.conf.d/30-k8s-ulimits.conf" /lib/systemd/systemd ""
# sysctl keys: each exists in this kernel (a typo would be refused on every host).
sysctl_missing=$(python3 - "$R/default" <<'EOF'
import json, os, sys
missing = set()
for step in ("01", "10"):
    for host in os.listdir(os.path.join(sys.argv[1], step)):
        for role in json.load(open(os.path.join(sys.argv[1], step, host, "_actions.json"))):
            for t in role["tasks"]:
                if t["module"] == "sysctl" and not t.get("skipped"):
                    missing |= {k for k in t["args"]["entries"]
                                if not os.path.exists("/proc/sys/" + k.replace(".", "/"))}
print(" ".join(sorted(missing)))
EOF
)
[ -z "$sysctl_missing" ] && ok "every sysctl key exists in this kernel" || bad "sysctl keys unknown here: $sysctl_missing"
# The chrony server serves its own clock; clients use the first chrony host only.
grep -qx 'local stratum 10' "$R/default/01/198.18.1.11/etc/chrony/chrony.conf" \
    && grep -qx 'server 198.18.1.11 iburst' "$R/default/01/198.18.1.15/etc/chrony/chrony.conf" \
    && ! grep -q '^server' <(grep -v '198.18.1.11' "$R/default/01/198.18.1.15/etc/chrony/chrony.conf") \
    && ok "chrony: server on the first chrony host, clients point to it" || bad "chrony server/client split"
# keepalived: one MASTER (LB_ROLE=master), unicast peers are the other ex_lb hosts.
grep -q 'state MASTER' "$R/default/10/198.18.1.15/etc/keepalived/keepalived.conf" \
    && grep -q 'state BACKUP' "$R/default/10/198.18.1.14/etc/keepalived/keepalived.conf" \
    && grep -A2 unicast_peer "$R/default/10/198.18.1.15/etc/keepalived/keepalived.conf" | grep -q '198.18.1.14' \
    && ok "keepalived: MASTER on LB_ROLE=master, unicast peer is the other LB" || bad "keepalived roles/peers"
# etcd: no plaintext URL anywhere in any rendered unit.
if grep -h -- '-urls=' "$R"/*/02/*/etc/systemd/system/etcd.service | grep -q 'http://'; then
    bad "etcd units carry no http:// URL"
else
    ok "etcd units carry no http:// URL"
fi
grep -q -- '--wal-dir=/var/lib/etcd-wal' "$R/options/02/198.18.1.11/etc/systemd/system/etcd.service" \
    && ! grep -q -- '--wal-dir' "$R/default/02/198.18.1.11/etc/systemd/system/etcd.service" \
    && grep -q -- '--initial-cluster-state=existing' "$R/options/02/198.18.1.11/etc/systemd/system/etcd.service" \
    && ok "etcd: ETCD_WAL_DIR and CLUSTER_STATE honoured" || bad "etcd: ETCD_WAL_DIR / CLUSTER_STATE"

# ---------------------------------------------------------------- detect script, for real
D=$ROOT/roles/ex-lb/files/ezk-detect-lb-if
if "$D" 127.0.0.1 "$TMP/if.conf" && [ "$(cat "$TMP/if.conf")" = '$LB_IF=lo' ] \
    && "$D" --check 127.0.0.1 "$TMP/if.conf" && ! "$D" --check 127.0.0.1 "$TMP/none.conf" \
    && ! "$D" 127.255.255.254 "$TMP/x.conf" 2>/dev/null; then
    ok "ezk-detect-lb-if finds the interface of an address, --check is exact"
else
    bad "ezk-detect-lb-if"
fi

# ---------------------------------------------------------------- etcd, for real on loopback
E=$TMP/etcd; mkdir -p "$E/ssl"
cp=$(free_port); pp=$(free_port)
cat > "$E/inv.yml" <<EOF
groups: {etcd: [127.0.1.1], kube_master: [127.0.1.1], kube_node: [], ex_lb: [], chrony: []}
config: {}
all: {bin_dir: "$TMP/bin", ca_dir: "$E/ssl", ETCD_DATA_DIR: "$E/data", ETCD_WAL_DIR: "$E/wal",
      ETCD_CLIENT_PORT: $cp, ETCD_PEER_PORT: $pp}
hosts: {}
EOF
mkcert() { # name cn eku san...
    local n=$1 cn=$2 eku=$3; shift 3
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
        -keyout "$E/ssl/$n-key.pem" -out "$E/ssl/$n.csr" 2>/dev/null
    { echo "extendedKeyUsage=$eku"; [ $# -gt 0 ] && echo "subjectAltName=$*"; } > "$E/ssl/$n.ext"
    openssl x509 -req -in "$E/ssl/$n.csr" -CA "$E/ssl/etcd-ca.pem" -CAkey "$E/ssl/etcd-ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$E/ssl/$n.ext" -out "$E/ssl/$n.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=etcd-ca" -days 2 \
    -keyout "$E/ssl/etcd-ca-key.pem" -out "$E/ssl/etcd-ca.pem" 2>/dev/null
mkcert etcd-server etcd-server serverAuth,clientAuth "IP:127.0.1.1,IP:127.0.0.1,DNS:localhost"
mkcert etcd-peer etcd-peer serverAuth,clientAuth "IP:127.0.1.1"
mkcert etcd-healthcheck-client etcd-healthcheck-client clientAuth
mkdir -p "$E/data" "$E/wal" && chmod 700 "$E/data" "$E/wal"
if $RENDER "$E/inv.yml" "$E/out" 02 >/dev/null; then
    unit=$E/out/02/127.0.1.1/etc/systemd/system/etcd.service
    check "systemd-analyze verify (loopback etcd unit)" systemd-analyze verify "$unit"
    # ExecStart with its continuation lines, as systemd joins them.
    start=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | sed 's/^ExecStart=//; s/\\$//' | tr '\n' ' ')
    # shellcheck disable=SC2086
    setsid $start > "$E/etcd.log" 2>&1 < /dev/null &
    PIDS+=($!); epid=$!
    health=$(python3 -c 'import json,sys
for r in json.load(open(sys.argv[1])):
    for t in r["tasks"]:
        if t["module"] == "wait_for": print(t["args"]["command"])' "$E/out/02/127.0.1.1/_actions.json")
    healthy=0
    for _ in $(seq 1 40); do
        if sh -c "$health" >/dev/null 2>&1; then healthy=1; break; fi
        sleep 0.5
    done
    if [ $healthy = 1 ]; then ok "etcd from the rendered unit: the role's wait_for command reports healthy"
    else bad "etcd never healthy"; tail -20 "$E/etcd.log" | sed 's/^/      /'; fi
    tls="--endpoints=https://127.0.0.1:$cp --cacert=$E/ssl/etcd-ca.pem"
    cli="$tls --cert=$E/ssl/etcd-healthcheck-client.pem --key=$E/ssl/etcd-healthcheck-client-key.pem"
    # shellcheck disable=SC2086
    if ETCDCTL_API=3 etcdctl $cli put /ezk/check yes >/dev/null \
        && [ "$(ETCDCTL_API=3 etcdctl $cli get --print-value-only /ezk/check)" = yes ]; then
        ok "etcd put/get over TLS with a client certificate"
    else bad "etcd put/get over TLS"; fi
    # shellcheck disable=SC2086
    if ETCDCTL_API=3 etcdctl $tls --command-timeout=3s get /ezk/check >/dev/null 2>&1; then
        bad "etcd accepted a client without a certificate"
    else ok "etcd refuses a client without a certificate"; fi
    listeners=$(ss -Hltnp | grep "pid=$epid," | awk '{print $4}' | sort | tr '\n' ' ')
    want=$(printf '%s\n' "127.0.0.1:$cp" "127.0.1.1:$cp" "127.0.1.1:$pp" | sort | tr '\n' ' ')
    [ "$listeners" = "$want" ] && ok "etcd listens only on $want" || bad "etcd listeners: $listeners (want $want)"
    plain=0
    for l in $listeners; do
        body=$(curl -s --max-time 3 "http://$l/health" || true)
        grep -q '"health"' <<<"$body" && plain=1
        # shellcheck disable=SC2086
        ETCDCTL_API=3 etcdctl --endpoints="http://$l" --dial-timeout=2s --command-timeout=3s get /ezk/check \
            >/dev/null 2>&1 && plain=1
    done
    [ $plain = 0 ] && ok "no etcd listener answers plaintext (curl, etcdctl http://)" || bad "an etcd listener answers plaintext"
    ls "$E/wal"/*.wal >/dev/null 2>&1 && ok "etcd writes its WAL to ETCD_WAL_DIR" || bad "no WAL in ETCD_WAL_DIR"
    if grep -qi deprecat "$E/etcd.log"; then
        bad "etcd warns about deprecated flags"; grep -i deprecat "$E/etcd.log" | head -5 | sed 's/^/      /'
    else ok "etcd logs no deprecated-flag warning"; fi
    kill "$epid"; wait "$epid" 2>/dev/null
else
    bad "render of the loopback etcd inventory"
fi

# ---------------------------------------------------------------- LBs, for real on loopback
L=$TMP/lb; mkdir -p "$L"
sp=$(free_port); lp=$(free_port)
cat > "$L/inv.yml" <<EOF
groups: {etcd: [127.0.3.11], kube_master: [127.0.3.11, 127.0.3.12, 127.0.3.13], kube_node: [],
         ex_lb: [127.0.3.21], chrony: []}
config: {}
all: {SECURE_PORT: "$sp"}
hosts: {127.0.3.21: {LB_ROLE: master, EX_APISERVER_VIP: 127.0.3.250, EX_APISERVER_PORT: "$lp",
        EX_LB_BIND: 127.0.3.250}}
EOF
# Three "apiservers": each answers its own address and closes.
python3 - "$sp" > "$L/backends.log" 2>&1 <<'EOF' &
import socket, sys, threading
port = int(sys.argv[1])
def serve(ip):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(ip.encode()); c.close()
ts = [threading.Thread(target=serve, args=(f"127.0.3.1{i}",), daemon=True) for i in (1, 2, 3)]
[t.start() for t in ts]; [t.join() for t in ts]
EOF
PIDS+=($!)
through_lb() { # prints the distinct backends reached by 6 connections to VIP:port
    python3 - "$lp" <<'EOF'
import socket, sys, time
seen = set()
for _ in range(6):
    for attempt in range(20):
        try:
            c = socket.create_connection(("127.0.3.250", int(sys.argv[1])), timeout=2)
            data = c.recv(64).decode(); c.close()
            if data: seen.add(data); break
        except OSError:
            pass
        time.sleep(0.25)
print(" ".join(sorted(seen)))
EOF
}
# haproxy needs 2 x maxconn open files: stay under this shell's hard limit.
maxconn=$(( $(ulimit -Hn) / 2 - 100 )); [ $maxconn -gt 20000 ] && maxconn=20000
for impl in haproxy nginx; do
    if ! $RENDER "$L/inv.yml" "$L/$impl" 10 -e EX_LB_IMPL=$impl -e EX_LB_MAXCONN=$maxconn >/dev/null; then bad "render LB ($impl)"; continue; fi
    h=$L/$impl/10/127.0.3.21/etc
    if [ $impl = haproxy ]; then
        haproxy -db -f "$h/haproxy/haproxy.cfg" > "$L/$impl.log" 2>&1 &
    else
        sed "s#^pid .*#pid $L/l4lb.pid;#" "$h/l4lb/l4lb.conf" > "$L/l4lb.conf"
        nginx -e stderr -g 'daemon off;' -c "$L/l4lb.conf" > "$L/$impl.log" 2>&1 &
    fi
    PIDS+=($!); lpid=$!
    got=$(through_lb)
    [ "$got" = "127.0.3.11 127.0.3.12 127.0.3.13" ] \
        && ok "$impl (rendered config) forwards VIP:EX_APISERVER_PORT to every master's SECURE_PORT" \
        || { bad "$impl forwarding reached: '$got'"; sed 's/^/      /' "$L/$impl.log"; }
    kill "$lpid"; wait "$lpid" 2>/dev/null
done

# ---------------------------------------------------------------- VRRP failover in netns
V=$TMP/vrrp; mkdir -p "$V"; chmod 755 "$TMP" "$V"
cat > "$V/inv.yml" <<EOF
groups: {etcd: [198.19.255.1], kube_master: [198.19.255.1], kube_node: [],
         ex_lb: [198.19.255.2, 198.19.255.1], chrony: []}
config: {}
all: {EX_APISERVER_VIP: 198.19.255.250}
hosts: {198.19.255.1: {LB_ROLE: master}, 198.19.255.2: {LB_ROLE: backup}}
EOF
vip_on() { # netns -> 0 when it holds the VIP
    [ -n "$(ip -n "$1" -o addr show to 198.19.255.250 2>/dev/null)" ]
}
wait_vip() { # netns_with netns_without -> 0 when only the first holds the VIP, within 15 s
    for _ in $(seq 1 60); do
        vip_on "$1" && ! vip_on "$2" && return 0
        sleep 0.25
    done
    return 1
}
if $RENDER "$V/inv.yml" "$V/out" 10 >/dev/null; then
    nsa=ezkv-a-$$ nsb=ezkv-b-$$
    ip netns add $nsa && NETNS+=($nsa) && ip netns add $nsb && NETNS+=($nsb)
    ip link add ezkva$$ type veth peer name ezkvb$$
    ip link set ezkva$$ netns $nsa && ip link set ezkvb$$ netns $nsb
    for n in a b; do
        ns=ezkv-$n-$$; ip=198.19.255.$([ $n = a ] && echo 1 || echo 2)
        ip -n $ns link set ezkv$n$$ name lbif0 && ip -n $ns link set lo up && ip -n $ns link set lbif0 up
        ip -n $ns addr add $ip/24 dev lbif0
        ip netns exec $ns "$ROOT/roles/ex-lb/files/ezk-detect-lb-if" $ip "$V/$n-if.conf"
        printf '#!/bin/sh\n# test double of `systemctl is-active --quiet haproxy`\ntest -e %s\n' "$V/$n.up" > "$V/lb-$n"
        chmod 755 "$V/lb-$n"; touch "$V/$n.up"
        sed -e "s#/etc/keepalived/ezk-lb-if.conf#$V/$n-if.conf#" \
            -e "s#/usr/bin/systemctl is-active --quiet haproxy#$V/lb-$n#" \
            "$V/out/10/$ip/etc/keepalived/keepalived.conf" > "$V/ka-$n.conf"
        ip netns exec $ns keepalived -n -l -P -f "$V/ka-$n.conf" -p "$V/$n.pid" -r "$V/$n-vrrp.pid" \
            > "$V/ka-$n.log" 2>&1 &
        PIDS+=($!)
    done
    [ "$(cat "$V/a-if.conf")" = '$LB_IF=lbif0' ] && ok "ezk-detect-lb-if finds the VRRP interface in a namespace" \
        || bad "ezk-detect-lb-if in a namespace: $(cat "$V/a-if.conf")"
    wait_vip $nsa $nsb && ok "VRRP: the VIP is on the LB_ROLE=master host" || bad "VRRP: VIP not on the master"
    rm "$V/a.up"
    wait_vip $nsb $nsa && ok "VRRP: the VIP moves to the backup when the master's LB is down" \
        || bad "VRRP: VIP did not move to the backup"
    touch "$V/a.up"
    wait_vip $nsa $nsb && ok "VRRP: the VIP returns to the master when its LB is back" \
        || { bad "VRRP: VIP did not return"; tail -n 20 "$V/ka-a.log" "$V/ka-b.log" | sed 's/^/      /'; }
else
    bad "render of the VRRP inventory"
fi

echo
if [ $fails -eq 0 ]; then echo "all template checks passed"; else echo "$fails check(s) failed"; fi
[ $fails -eq 0 ]
