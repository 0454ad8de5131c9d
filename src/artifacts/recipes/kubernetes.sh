#!/bin/bash
# Recipe: Kubernetes server binaries from Debian's `kubernetes` source package.
#
# Run by `ezk download --from-apt` (src/artifacts/source_build.rs), which fetched and verified
# every input against the versions manifest and passes them in the environment:
#   WORK       empty scratch directory (deleted after the build)
#   OUT        where the binaries go (kube-apiserver ... kubectl, pause)
#   SRC        the upstream tarball of the source package (*.orig.tar.gz)
#   TOOLCHAIN  the Go toolchain .debs, space-separated (golang-X-go, golang-X-src)
#   GOCACHE    Go's build cache (kept between builds: a rebuild takes seconds, not minutes)
#   VERSION    the Kubernetes version the tree is (v1.20.2), stamped into the binaries
#   COMMIT     its upstream commit, stamped into the binaries
#   BUILD_DATE the upstream release's build date, stamped (fixed, so the build is reproducible)
#   BINARIES   the Go binaries to build (cmd/<name>), space-separated
#   COREDNS_SRC     (optional) the CoreDNS source bundle shipped in ezk: CoreDNS is built too
#   COREDNS_PLUGINS the CoreDNS plugins compiled in (plugin.cfg names), space-separated
# Lines starting with "== " are progress steps (ezk shows them); everything goes to the log.
#
# Why these choices (facts, not taste):
# - Go 1.15 from Debian bullseye: the tree's vendored modules (reflect2 1.0.1) crash at run time
#   with Go >= 1.18, and Go 1.19's module mode refuses the vendor tree. Upstream built v1.20.2
#   with Go 1.15.5. The .debs are unpacked here, nothing is installed system-wide.
# - pkg/generated/openapi/zz_generated.openapi.go is not in the tarball (upstream generates it
#   in its Makefile); without it kube-apiserver does not compile. It is generated here as
#   upstream's build/root/Makefile.generated_files does, and the API-rule report must equal
#   the tree's own api/api-rules/violation_exceptions.list, as upstream checks.
# - CGO_ENABLED=0, -trimpath, GOROOT_FINAL, fixed version stamps: static binaries whose sha256
#   does not depend on the machine or directory, so the manifest can pin them.
# - pause (the pod sandbox's process) is C: built static with this machine's gcc, as upstream's
#   build/pause/Makefile does. Its sha256 follows gcc and glibc, so it is recorded, not pinned.
# - Debian's own patches change kubectl's packaging only; the pristine upstream tree is built.
# - CoreDNS (cluster DNS; Debian has no package): v1.8.3 pins exactly the client-go, api and
#   apimachinery v0.20.2 this tree vendors, so it builds in GOPATH mode against a copy of this
#   tree's vendor/ (symlinks into staging/ dereferenced), minus the two modules that are too old
#   or pruned here (miekg/dns 1.1.4, prometheus/client_golang without promauto), plus the ten
#   small modules of the bundle at the versions CoreDNS pins. Only the plugins a cluster's
#   Corefile uses are compiled in (upstream's plugin.cfg, filtered, keeping its order: the
#   order is the order a query passes the plugins).
set -euo pipefail
: "${WORK:?}" "${OUT:?}" "${SRC:?}" "${TOOLCHAIN:?}" "${GOCACHE:?}" "${VERSION:?}" "${COMMIT:?}" "${BUILD_DATE:?}" "${BINARIES:?}"

echo "== unpack toolchain"
mkdir -p "$WORK/toolchain"
for deb in $TOOLCHAIN; do dpkg-deb -x "$deb" "$WORK/toolchain"; done
GOROOT=$(echo "$WORK"/toolchain/usr/lib/go-*)
[ -x "$GOROOT/bin/go" ] || { echo "no go binary in the toolchain .debs ($TOOLCHAIN)" >&2; exit 1; }
# The linker records GOROOT_FINAL (default: wherever the toolchain sits) in its build ID: give
# it the toolchain's real install path, so the scratch dir's location leaves no trace.
export GOROOT PATH="$GOROOT/bin:$PATH" GOROOT_FINAL="/usr/lib/${GOROOT##*/}"
export GOPATH="$WORK/gopath" GOFLAGS= GOPROXY=off GOSUMDB=off CGO_ENABLED=0 GOTOOLCHAIN=local
go version

echo "== unpack source"
tree="$GOPATH/src/k8s.io/kubernetes"
mkdir -p "$GOPATH/src/k8s.io" "$WORK/unpack"
tar -xzf "$SRC" -C "$WORK/unpack"
mv "$WORK"/unpack/kubernetes-* "$tree"
cd "$tree"

echo "== openapi-gen"
GO111MODULE=off go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
# Every Go dir (staging/src as vendor/), its +k8s: tag files, those asking for openapi-gen,
# minus code-generator and sample-apiserver (upstream's KUBE_OPENAPI_TAG_FILES).
dirs=$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
  | sed 's|^./staging/src|vendor|; s|/[^/]*$||; s|^./||' | LC_ALL=C sort -u)
tagfiles=$(for d in $dirs; do find "$d" -maxdepth 1 -type f -name '*.go'; done | xargs grep --color=never -l '^// *+k8s:')
odirs=$(echo "$tagfiles" | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
  | xargs grep --color=never -l '+k8s:openapi-gen=' | xargs -n1 dirname | LC_ALL=C sort -u)
inputs=$(echo "$odirs" | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
echo "$(echo "$odirs" | wc -l) packages ask for OpenAPI definitions"
GO111MODULE=off "$WORK/openapi-gen" --logtostderr -i "$inputs" \
  -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$WORK/violations.report"
diff -u api/api-rules/violation_exceptions.list "$WORK/violations.report" \
  || { echo "openapi-gen's API rule report differs from the tree's known list" >&2; exit 1; }

ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  major=${VERSION#v}; major=${major%%.*}; minor=${VERSION#v*.}; minor=${minor%%.*}
  ld="$ld -X $p.gitVersion=$VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitCommit=$COMMIT"
  ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
done
mkdir -p "$OUT"
for b in $BINARIES; do
  echo "== $b"
  GO111MODULE=on go build -mod=vendor -trimpath -tags selinux,notest -ldflags "$ld" -o "$OUT/$b" "./cmd/$b"
done

echo "== pause"
pause_tag=$(sed -n 's/^TAG *= *//p' build/pause/Makefile)
gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-debian" -o "$OUT/pause" build/pause/linux/pause.c
strip "$OUT/pause"
echo "$pause_tag" > "$OUT/pause.version"
if [ -n "${COREDNS_SRC:-}" ]; then
  echo "== coredns"
  : "${COREDNS_PLUGINS:?}"
  cdir="$GOPATH/src/github.com/coredns/coredns"
  mkdir -p "$WORK/coredns-src" "${cdir%/*}"
  tar -xJf "$COREDNS_SRC" -C "$WORK/coredns-src"
  bundle=$(echo "$WORK"/coredns-src/coredns-*-src)
  mv "$bundle/coredns" "$cdir"
  cp -aL "$tree/vendor" "$cdir/vendor"
  rm -rf "$cdir/vendor/modules.txt" "$cdir/vendor/github.com/miekg/dns" "$cdir/vendor/github.com/prometheus/client_golang"
  cp -a "$bundle/deps/." "$cdir/vendor/"
  cd "$cdir"
  : > plugin.cfg.kept
  while IFS= read -r line; do
    case "$line" in \#*|"") continue ;; esac
    for p in $COREDNS_PLUGINS; do [ "$p" = "${line%%:*}" ] && echo "$line" >> plugin.cfg.kept; done
  done < plugin.cfg
  [ "$(wc -l < plugin.cfg.kept)" -eq "$(echo $COREDNS_PLUGINS | wc -w)" ] \
    || { echo "COREDNS_PLUGINS names a plugin CoreDNS does not have: $COREDNS_PLUGINS" >&2; exit 1; }
  mv plugin.cfg.kept plugin.cfg
  GO111MODULE=off go run directives_generate.go
  commit=$(sed -n 's|^github.com/coredns/coredns [^ ]* ||p' "$bundle/SOURCES")
  GO111MODULE=off go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${commit:0:8}" \
    -o "$OUT/coredns" .
  "$OUT/coredns" -version
fi
echo "== done"
