#!/usr/bin/env bash
# Install what ezk's lab and test suite need on a Debian 12 deploy machine (run as root), and
# build the lab's Kubernetes once (cached machine-wide in /var/lib/ezk/builds/; ~6 min on 2
# cores the first time, about a second after that), and its second stamp for the upgrade tests.
# Services that packages would start (nginx, haproxy, etcd, docker-registry, ...) are kept from starting here:
# the deploy machine only needs their binaries (config checks, etcd for TLS tests, the mirror,
# docker-registry for the image download tests). libfaketime: the lab fault suite shows one host a skewed clock.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "tests/deps.sh: run as root (sudo tests/deps.sh)" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
pkgs=(systemd-container debootstrap iproute2 openssh-client openssh-server openssl ca-certificates
      etcd-server etcd-client containerd runc containernetworking-plugins
      nginx libnginx-mod-stream haproxy keepalived chrony util-linux procps curl kmod
      gcc libc6-dev binutils docker-registry libfaketime)
# kubectl: Debian's kubernetes-client unless some kubectl is already installed.
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
echo "deps: ok (${#missing[@]} package(s) installed)"
# The lab's Kubernetes v1.20.2, built from Debian's source package (see docs/lab.md). Any home
# will do: the build lands in the machine's cache, which every later home and lab uses. Then the
# same tree stamped v1.20.2+lab.1 (set lab-debian-next: what the upgrade tests upgrade to); with
# Go's build cache warm from the first, it only links.
cd "$(dirname "$0")/.."
cargo build --quiet
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
for set in lab-debian lab-debian-next; do
  target/debug/ezk --home "$home" download --k8s-ver "$set" --from-apt --only kubernetes-server | tail -n 1
done
