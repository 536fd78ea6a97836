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
#   bash scripts/build-guests.sh c-guest    # only the C guest (the e2e tests use this)
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

if [ "${1:-}" = c-guest ]; then
  build_c_guest
  exit 0
elif [ $# -gt 0 ]; then
  echo "usage: $0 [c-guest]" >&2
  exit 2
fi

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
fi

build_c_guest
mkdir -p examples/docs-site/tools
cp examples/c-guest/target/wordcount.wasm examples/docs-site/tools/
echo "   modules in examples/docs-site/tools: $(cd examples/docs-site/tools && echo *.wasm)"
