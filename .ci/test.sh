#!/usr/bin/env bash
# Every test of the project. The README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Toolchain components (rustup is on every machine of this project's kind).
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# A one-off CI build gains nothing from incremental caches, which would take many GB of disk.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi

echo "== format"
cargo fmt --all --check
echo "== lint"
cargo clippy --workspace --all-targets -- -D warnings
if [ -x operator/check-crds.sh ]; then
  echo "== generated CRDs match the code"
  operator/check-crds.sh
fi
echo "== e2e tools (pinned control plane, kwok, helm; built once, cached in ~/.cache/medledger)"
start=$SECONDS
bash e2e/tools.sh >/dev/null
echo "e2e tools ready in $((SECONDS - start)) s"
echo "== tests (unit, process-level, charts, and e2e against a real control plane)"
cargo test --workspace
# The scale benchmark (figures printed, never asserted): 100 hospitals in one control plane,
# then 5 minutes of steady state. CI runs it; locally, set MEDLEDGER_SCALE_BENCH=1.
if [ "${CI:-}" = "true" ] || [ "${MEDLEDGER_SCALE_BENCH:-}" = "1" ]; then
  echo "== scale benchmark (e2e/bench)"
  e2e/bench --hospitals 100
fi
