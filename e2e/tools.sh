#!/usr/bin/env bash
# Builds (once) and prints the paths of the e2e tools, as KEY=path lines on stdout:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
#   kwok (sigs.k8s.io/kwok), helm (helm.sh/helm/v3), etcd (etcd-bin-vendored crate).
# Each tool lives in ~/.cache/medledger/<tool>-<version>/ (MEDLEDGER_CACHE overrides the
# root); a directory is complete only once its `.done` marker exists, so an interrupted
# build is redone, never half-used. Progress goes to stderr.
#
#   eval "$(e2e/tools.sh)"       # then "$KUBE_APISERVER", "$HELM", ...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
cache="${MEDLEDGER_CACHE:-$HOME/.cache/medledger}"
mkdir -p "$cache"

log() { echo "tools: $*" >&2; }
die() { echo "tools: ERROR: $*" >&2; exit 1; }
command -v go >/dev/null || die "Go is not installed (needed to build the pinned control plane); install Go >= 1.25"

# Static, reproducible, small binaries; 2 parallel compiles fit the 2-core machines.
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
build_flags=(-p 2 -ldflags "-s -w")

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging module
# (k8s.io/api, k8s.io/apiserver, ...) with a local path, which only works inside its repo.
# A throw-away wrapper module requires it and pins each staging module to the matching
# v0.X.Y release instead.
build_kubernetes() {
  local dir="$cache/kubernetes-$KUBE_VERSION"
  [ -f "$dir/.done" ] && return
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION (cold: several minutes)"
  local start=$SECONDS wrap
  wrap="$(mktemp -d)"
  trap 'rm -rf "$wrap"' RETURN
  mkdir -p "$dir"
  (
    cd "$wrap"
    go mod init medledger.local/e2e-kubernetes >/dev/null 2>&1
    local gomod staging_minor="v0.${KUBE_VERSION#v1.}"
    gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
    # Every `k8s.io/x => ./staging/src/k8s.io/x` line of kubernetes' go.mod becomes a pin.
    local mods
    mods="$(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/.*#\1#p' "$gomod")"
    [ -n "$mods" ] || die "found no staging modules in $gomod"
    {
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      for m in $mods; do echo "replace $m => $m $staging_minor"; done
    } >>go.mod
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy -e >&2 2>/dev/null || true
    go get "k8s.io/kubernetes@$KUBE_VERSION" >&2
    local v="k8s.io/component-base/version" minor="${KUBE_VERSION#v1.}"
    minor="${minor%%.*}"
    # The version stamps kubectl and the components report (and skew checks read).
    go build "${build_flags[@]}" -tags tools \
      -ldflags "-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
      -o "$dir/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  )
  touch "$dir/.done"
  log "kubernetes $KUBE_VERSION built in $((SECONDS - start)) s"
}

# kwok and helm have ordinary go.mods: `go install module/cmd@version` pins them.
go_install() { # name version package
  local name=$1 version=$2 pkg=$3 dir="$cache/$1-$2"
  [ -f "$dir/.done" ] && return
  log "building $name $version"
  local start=$SECONDS v=""
  if [ "$name" = helm ]; then
    # helm's idea of the Kubernetes version (for `template` and `lint` without a cluster):
    # the pinned control plane's, as its Makefile would stamp it.
    local minor="${KUBE_VERSION#v1.}" h=helm.sh/helm/v3
    minor="${minor%%.*}"
    v="-X $h/internal/version.version=$version -X $h/pkg/chartutil.k8sVersionMajor=1"
    v+=" -X $h/pkg/chartutil.k8sVersionMinor=$minor -X $h/pkg/lint/rules.k8sVersionMajor=1"
    v+=" -X $h/pkg/lint/rules.k8sVersionMinor=$minor"
  fi
  GOBIN="$dir" go install "${build_flags[@]}" -ldflags "-s -w $v" "$pkg@$version"
  touch "$dir/.done"
  log "$name $version built in $((SECONDS - start)) s"
}

# etcd comes prebuilt inside the etcd-bin-vendored crate the workspace already depends on
# (the ledger benchmark runs it): cargo fetches it like any crate, we copy the binary.
get_etcd() {
  local manifest version dir
  manifest="$(cd "$root" && cargo metadata --format-version 1 --locked 2>/dev/null |
    python3 -c 'import json,sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"]=="etcd-bin-vendored-linux-amd64": print(p["version"], p["manifest_path"])')" ||
    die "cargo metadata failed; run 'cargo fetch' in $root"
  [ -n "$manifest" ] || die "etcd-bin-vendored-linux-amd64 is not in Cargo.lock (only linux-x86_64 is supported)"
  version="${manifest%% *}"
  dir="$cache/etcd-v$version"
  if [ ! -f "$dir/.done" ]; then
    local src
    src="$(dirname "${manifest#* }")/bin/etcd"
    [ -x "$src" ] || (cd "$root" && cargo fetch --locked >&2)
    [ -x "$src" ] || die "etcd binary not found at $src"
    mkdir -p "$dir" && cp "$src" "$dir/etcd" && touch "$dir/.done"
  fi
  echo "$dir/etcd"
}

build_kubernetes
# kwok simulates nothing without stages; take its own "fast" node and pod stages and the
# lease heartbeat (what kwokctl uses) from the same module version, as one config file.
kwok_stages() {
  local out="$cache/kwok-$KWOK_VERSION/stages.yaml" src f
  [ -f "$out" ] && return
  src="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  [ -d "$src/kustomize/stage" ] || die "kwok stages not found in $src"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$src/kustomize/stage/$f"
  done >"$out.tmp"
  mv "$out.tmp" "$out"
}

go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
kwok_stages
go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
etcd="$(get_etcd)"

k="$cache/kubernetes-$KUBE_VERSION"
cat <<OUT
KUBE_APISERVER=$k/kube-apiserver
KUBE_CONTROLLER_MANAGER=$k/kube-controller-manager
KUBE_SCHEDULER=$k/kube-scheduler
KUBECTL=$k/kubectl
KWOK=$cache/kwok-$KWOK_VERSION/kwok
KWOK_STAGES=$cache/kwok-$KWOK_VERSION/stages.yaml
HELM=$cache/helm-$HELM_VERSION/helm
ETCD=$etcd
OUT
