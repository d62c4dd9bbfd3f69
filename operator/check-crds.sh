#!/usr/bin/env bash
# Regenerates the CRDs and their reference from the Rust types and fails when crds/ or
# docs/crd-reference.md differ from them. Run from anywhere; CI calls it. Fix a failure with:
#   cargo run -p medledger-operator --bin crdgen -- crds docs/crd-reference.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root"
cargo run --quiet -p medledger-operator --bin crdgen -- "$tmp/crds" "$tmp/crd-reference.md" >/dev/null
status=0
diff -ru "$root/crds" "$tmp/crds" || status=1
diff -u "$root/docs/crd-reference.md" "$tmp/crd-reference.md" || status=1
if [ "$status" -ne 0 ]; then
  echo "crds/ or docs/crd-reference.md is out of date with operator/src/crd: run 'cargo run -p medledger-operator --bin crdgen -- crds docs/crd-reference.md' and commit the result" >&2
  exit 1
fi
echo "crds/ and docs/crd-reference.md match the code"
