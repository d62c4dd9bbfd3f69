#!/usr/bin/env bash
# Builds the IPFS tools the blob-storage tests run against — kubo (`ipfs`) and
# ipfs-cluster (`ipfs-cluster-service`, `ipfs-cluster-ctl`) — from their Go modules at
# pinned versions, into a cache directory keyed by those versions, so only the first run
# pays for the build. Prints the directory holding the binaries as its last line on stdout;
# everything else goes to stderr.
#
# Usage: node-image/scripts/ipfs-tools.sh            # build if needed, print the bin dir
# Env:   MEDLEDGER_CACHE (default ~/.cache/medledger)
set -euo pipefail

# Pinned versions: these are the ones the Go module proxy serves and the tests were run
# against. Change both together and rerun node-image/node/tests/blob_ipfs.rs.
KUBO_VERSION=v0.41.0
CLUSTER_VERSION=v1.1.0

cache="${MEDLEDGER_CACHE:-$HOME/.cache/medledger}"
dest="$cache/ipfs-kubo-$KUBO_VERSION-cluster-$CLUSTER_VERSION/bin"
tools=(ipfs ipfs-cluster-service ipfs-cluster-ctl)

have_all() {
  for t in "${tools[@]}"; do [ -x "$dest/$t" ] || return 1; done
}

if have_all; then
  echo "$dest"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "ipfs-tools: Go is not installed; install Go >= 1.24 (https://go.dev/dl) and rerun" >&2
  exit 2
fi

mkdir -p "$cache"
# One builder at a time: parallel test binaries may call this script together.
exec 9>"$cache/ipfs-tools.lock"
flock 9
if have_all; then
  echo "$dest"
  exit 0
fi

staging="$(mktemp -d "$cache/ipfs-build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)
# Static, reproducible, stripped binaries: no C toolchain needed, smaller and faster to link.
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath"
ldflags="-s -w"
echo "ipfs-tools: building kubo $KUBO_VERSION and ipfs-cluster $CLUSTER_VERSION (first run only, a few minutes)" >&2
# Build each tool inside its own module (its go.mod, go.sum and replace directives), as
# its release does. `go install pkg@version` would be simpler but asks the proxy for the
# module's version list, which the registry mirror here refuses.
build() { # module version package...
  local module="$1" version="$2"; shift 2
  local dir
  dir="$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || { echo "ipfs-tools: cannot download $module@$version" >&2; exit 1; }
  for pkg in "$@"; do
    (cd "$dir" && go build -ldflags="$ldflags" -o "$staging/bin/$(basename "$pkg")" "./$pkg") >&2
  done
}
build github.com/ipfs/kubo "$KUBO_VERSION" cmd/ipfs
build github.com/ipfs-cluster/ipfs-cluster "$CLUSTER_VERSION" \
  cmd/ipfs-cluster-service cmd/ipfs-cluster-ctl
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$staging/bin" "$dest"
echo "ipfs-tools: built in $(( $(date +%s) - start )) s into $dest" >&2
echo "$dest"
