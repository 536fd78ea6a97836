#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the wasm target, builds the
# guest modules the tests run, then runs every test in release mode (a debug wasmtime
# compiles guests about 15x slower, and release is also the cheaper clean build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh
cargo test --release --workspace "$@"
# The example plugins are a workspace of their own; their logic is tested natively.
cargo test --locked --release --manifest-path examples/plugins/Cargo.toml
