#!/usr/bin/env bash
# Regenerates the CRDs from the Rust types and fails when crds/ differs from them.
# Run from anywhere; CI calls it. Fix a failure with:
#   cargo run -p medledger-operator --bin crdgen -- crds
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root"
cargo run --quiet -p medledger-operator --bin crdgen -- "$tmp" >/dev/null
if ! diff -ru "$root/crds" "$tmp"; then
  echo "crds/ is out of date with operator/src/crd: run 'cargo run -p medledger-operator --bin crdgen -- crds' and commit the result" >&2
  exit 1
fi
echo "crds/ matches the code"
