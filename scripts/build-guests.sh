#!/usr/bin/env bash
# Builds every guest module from source for wasm32-wasip1, installing the target first
# if this toolchain lacks it:
#   - tests/guests      -> the probe the end-to-end tests run;
#   - examples/plugins  -> the example plugins, copied to examples/docs-site/tools/.
# Run from anywhere; safe to rerun (cargo only rebuilds what changed).
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-wasip1
if ! rustup target list --installed | grep -qx "$target"; then
  echo "== installing the $target target"
  rustup target add "$target"
fi

echo "== building test guests (tests/guests)"
cargo build --locked --release --target "$target" --manifest-path tests/guests/Cargo.toml

if [ -f examples/plugins/Cargo.toml ]; then
  echo "== building example plugins (examples/plugins)"
  cargo build --locked --release --target "$target" --manifest-path examples/plugins/Cargo.toml
  mkdir -p examples/docs-site/tools
  for wasm in examples/plugins/target/"$target"/release/*.wasm; do
    cp "$wasm" examples/docs-site/tools/
  done
  echo "   plugins in examples/docs-site/tools: $(cd examples/docs-site/tools && echo *.wasm)"
fi
