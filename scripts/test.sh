#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the wasm target, builds the
# guest modules the tests run, then runs every test in release mode (a debug wasmtime
# compiles guests about 15x slower, and release is also the cheaper clean build).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh
# Style and lints first: they fail in seconds where the tests take minutes. A minimal
# toolchain profile lacks the two components; install them if so.
for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
cargo fmt --all --check
cargo clippy --locked --release --workspace --all-targets -- -D warnings
# Provenance is checked with validators wask's authors did not write: in-toto's
# attestation library and securesystemslib, from PyPI, in a venv of their own; the
# `wask.toml` JSON Schema with the `jsonschema` package.
validators="$PWD/target/validators"
if ! "$validators/bin/python" -c 'import in_toto_attestation, securesystemslib, cryptography, jsonschema' 2>/dev/null; then
  python3 -m venv "$validators"
  "$validators/bin/pip" install --quiet 'in-toto-attestation==0.9.3' 'securesystemslib[crypto]==1.6.0' 'jsonschema==4.26.0'
fi
export WASK_TEST_VALIDATOR_PYTHON="$validators/bin/python"
# The remote cache is tested against real servers on loopback ports: nginx (Debian) for
# the Bazel HTTP cache layout and BuildGrid (PyPI) for REAPI v2, stopped on exit.
source scripts/servers.sh
start_servers
# The end-to-end tests drive the binary wask ships, built here.
cargo build --locked --release -p wask --bin wask
target_dir=$(cargo metadata --locked --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
WASK_TEST_BINARY="$target_dir/release/wask" cargo test --locked --release --workspace "$@"
# The two crates that would be published package without reaching outside themselves.
cargo package --locked --no-verify --allow-dirty -p wask-runtime -p wask-remote -p wask >/dev/null
# The example plugins are a workspace of their own; their logic is tested natively.
cargo test --locked --release --manifest-path examples/plugins/Cargo.toml
# The Python guest SDK (standard library only) is tested natively, as a task's logic is.
python3 -m unittest discover -s guest-sdk/python/tests
