#!/usr/bin/env bash
# Runs the example workspace end to end: builds wask and the example plugins, runs every
# task fresh, deletes the outputs, and runs again to show every task restored from the
# cache byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh
cargo build --release -p wask
wask=target/release/wask
site=examples/docs-site

echo "== first run: every task runs fresh in its sandbox"
"$wask" -C "$site" cache clear >/dev/null
"$wask" -C "$site" run --workspace
before=$(cd "$site" && find . -path ./.wask -prune -o -path ./tools -prune -o -path '*/dist/*' -type f -print | sort | xargs sha256sum)

echo "== outputs deleted; second run: every task comes from the cache"
find "$site" -path "$site/.wask" -prune -o -type d -name dist -prune -exec rm -rf {} +
"$wask" -C "$site" run --workspace --summary "$site/.wask/summary.json"
after=$(cd "$site" && find . -path ./.wask -prune -o -path ./tools -prune -o -path '*/dist/*' -type f -print | sort | xargs sha256sum)

if [ "$before" != "$after" ]; then
  echo "restored outputs differ from the fresh run:" >&2
  diff <(echo "$before") <(echo "$after") >&2
  exit 1
fi
echo "== restored outputs are byte-identical to the fresh run:"
echo "$after"
