#!/usr/bin/env bash
# Builds every guest module from source for wasm32-wasip1, installing the target first
# if this toolchain lacks it:
#   - tests/guests      -> the probe the end-to-end tests run;
#   - examples/plugins  -> the example plugins, copied to examples/docs-site/tools/;
#   - examples/c-guest  -> wordcount.wasm, a C task compiled by Zig's clang against its
#                          bundled wasi-libc, also copied to examples/docs-site/tools/.
# Run from anywhere; safe to rerun (cargo and zig only rebuild what changed).
#
#   bash scripts/build-guests.sh            # everything
#   bash scripts/build-guests.sh rust       # only the Rust guests (the tests call this)
#   bash scripts/build-guests.sh c-guest    # only the C guest (the e2e tests use this)
#
# This is the one place the repository's guests are built: the tests run it too (once
# per test binary), so a guest edited since the last build is rebuilt before it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Zig comes from PyPI (the `ziglang` wheel bundles the compiler and wasi-libc), pinned.
# A python3 that already has exactly this version is used as is; otherwise the wheel is
# installed with `pip --target` into target/tools/ (gitignored, no root or venv needed,
# and not refused by an externally managed system Python).
zig_version=0.15.2
zig_dir=target/tools/ziglang-$zig_version

zig() {
  if [ "$(python3 -m ziglang version 2>/dev/null)" = "$zig_version" ]; then
    python3 -m ziglang "$@"
  else
    PYTHONPATH="$PWD/$zig_dir${PYTHONPATH:+:$PYTHONPATH}" python3 -m ziglang "$@"
  fi
}

# Copies a module into examples/docs-site/tools/ only if it changed, by rename, so a
# test reading the old one meanwhile never sees half a file.
install_module() {
  local dest=examples/docs-site/tools/$(basename "$1")
  if ! cmp -s "$1" "$dest"; then
    cp "$1" "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
  fi
}

build_c_guest() {
  if [ "$(zig version 2>/dev/null)" != "$zig_version" ]; then
    echo "== installing zig $zig_version (PyPI ziglang) into $zig_dir"
    if ! python3 -m pip --version >/dev/null 2>&1; then
      echo "error: the C guest needs python3 with pip to install zig (e.g. apt-get install python3-pip)" >&2
      exit 1
    fi
    rm -rf "$zig_dir"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --target "$zig_dir" "ziglang==$zig_version"
  fi
  echo "== building the C guest (examples/c-guest) with zig $zig_version"
  mkdir -p examples/c-guest/target
  # -s strips debug info (800 KiB -> 35 KiB) and with it the only build-path-dependent
  # bytes, so the module, and therefore every cache key using it, is reproducible.
  zig cc -target wasm32-wasi -O2 -std=c99 -Wall -Wextra -pedantic -Werror -s \
    -o examples/c-guest/target/wordcount.wasm examples/c-guest/wordcount.c
}

target=wasm32-wasip1

build_rust_guests() {
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "== installing the $target target"
    rustup target add "$target"
  fi
  # Explicit target directories: a CARGO_TARGET_DIR set for the host build must not
  # move the guests away from where the tests look for them.
  echo "== building test guests (tests/guests)"
  cargo build --locked --release --target "$target" --manifest-path tests/guests/Cargo.toml \
    --target-dir tests/guests/target
  echo "== building example plugins (examples/plugins)"
  cargo build --locked --release --target "$target" --manifest-path examples/plugins/Cargo.toml \
    --target-dir examples/plugins/target
  mkdir -p examples/docs-site/tools
  for wasm in examples/plugins/target/"$target"/release/*.wasm; do
    install_module "$wasm"
  done
}

case "${1:-}" in
  c-guest) build_c_guest; exit 0 ;;
  rust) build_rust_guests; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [rust|c-guest]" >&2; exit 2 ;;
esac

build_rust_guests

build_c_guest
mkdir -p examples/docs-site/tools
install_module examples/c-guest/target/wordcount.wasm
echo "   modules in examples/docs-site/tools: $(cd examples/docs-site/tools && echo *.wasm)"
