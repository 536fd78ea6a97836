#!/usr/bin/env bash
# Turborepo's remote cache side by side with wask's remote-hit bench
# (host/benches/remote.rs): N tasks (default 1000) in packages of 50, each task reading
# one source file and writing one output, run once to fill a `turborepo-remote-cache`
# server on loopback, then ROUNDS times (default 3) restored from it into an empty local
# cache, and again from the local cache. Figures per task, medians of ROUNDS.
#
#   bash scripts/bench-turbo-remote.sh [TASKS [ROUNDS]]
#
# turbo and the server are installed with npm into target/turbo-bench/ (kept between
# runs). Needs node and npm. BENCH_TURBO_KEEP=1 keeps the scratch directory (workspace,
# server log, turbo's last output) for a look. Everything else lives in a temporary directory removed at
# the end. As in wask's bench, nothing is deleted while measuring: the local cache and
# the outputs are moved to a graveyard (on this machine's journal-less ext4, files
# created shortly after a mass delete are slow).
set -euo pipefail

TASKS=${1:-1000}
ROUNDS=${2:-3}
PER_PACKAGE=50
TURBO_VERSION=2.11.11
SERVER_VERSION=2.12.0

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INSTALL="$REPO/target/turbo-bench"

log() { printf '[bench-turbo] %s\n' "$*" >&2; }
now() { date +%s.%N; }

# --- install (cached) --------------------------------------------------------------
installed_version() { # PACKAGE -> version installed in $INSTALL, or nothing
  node -e 'try { console.log(require(process.argv[1] + "/package.json").version) } catch {}' \
    "$INSTALL/node_modules/$1" 2>/dev/null || true
}
if [[ -z "$(installed_version turbo)" || "$(installed_version turborepo-remote-cache)" != "$SERVER_VERSION" ]]; then
  mkdir -p "$INSTALL"
  [[ -f "$INSTALL/package.json" ]] || echo '{"name":"turbo-bench","private":true}' >"$INSTALL/package.json"
  turbo_spec="turbo@$TURBO_VERSION"
  if ! npm view "$turbo_spec" version >/dev/null 2>&1; then
    turbo_spec="turbo@2" # the newest 2.x
    log "turbo $TURBO_VERSION not in the registry: installing $turbo_spec"
  fi
  log "installing $turbo_spec and turborepo-remote-cache@$SERVER_VERSION into $INSTALL"
  t0=$(now)
  (cd "$INSTALL" && npm install --no-audit --no-fund --loglevel=error \
    "$turbo_spec" "turborepo-remote-cache@$SERVER_VERSION" >&2)
  log "installed in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"
fi
# The platform binary itself, not the node shim that looks for a local turbo first.
TURBO=$(node -e '
  const p = require("path"), fs = require("fs"), root = process.argv[1];
  const os = process.platform === "win32" ? "windows" : process.platform;
  const arch = process.arch === "x64" ? "64" : process.arch;
  const bin = p.join(root, "node_modules/@turbo", os + "-" + arch, "bin/turbo");
  console.log(fs.existsSync(bin) ? bin : p.join(root, "node_modules/.bin/turbo"));
' "$INSTALL")
SERVER_CLI="$INSTALL/node_modules/turborepo-remote-cache/dist/cli.js"
TURBO_V=$("$TURBO" --version 2>/dev/null | tail -1)
SERVER_V=$(installed_version turborepo-remote-cache)
NPM_V=$(npm --version)
log "turbo $TURBO_V, turborepo-remote-cache $SERVER_V, node $(node --version), npm $NPM_V"

# --- scratch directory, server, cleanup ---------------------------------------------
DIR=$(mktemp -d "${TMPDIR:-/tmp}/bench-turbo.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "${BENCH_TURBO_KEEP:-}" ]]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WS="$DIR/ws"
GRAVE="$DIR/graveyard"
STORAGE="$DIR/storage"
SERVER_LOG="$DIR/server.log"
mkdir -p "$WS" "$GRAVE" "$STORAGE"

free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
}
PORT=$(free_port)
TOKEN="bench-$RANDOM$RANDOM"
API="http://127.0.0.1:$PORT"

log "starting turborepo-remote-cache on $API"
t0=$(now)
# LOG_LEVEL=info is the server's default: fastify logs every request, which is how the
# requests are counted below (no proxy in the way of the timings).
HOST=127.0.0.1 PORT=$PORT TURBO_TOKEN=$TOKEN STORAGE_PROVIDER=local STORAGE_PATH="$STORAGE" \
  STORAGE_PATH_USE_TMP_FOLDER=false LOG_LEVEL=info NODE_ENV=production \
  node "$SERVER_CLI" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
up=
for _ in $(seq 1 300); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  if node -e '
    fetch(process.argv[1] + "/v8/artifacts/status", { headers: { Authorization: "Bearer " + process.argv[2] } })
      .then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$API" "$TOKEN" 2>/dev/null; then
    up=1
    break
  fi
  sleep 0.1
done
if [[ -z "$up" ]]; then
  log "the server did not come up; its log:"
  cat "$SERVER_LOG" >&2
  exit 1
fi
log "server up in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"

# --- the workspace -----------------------------------------------------------------
PACKAGES=$(((TASKS + PER_PACKAGE - 1) / PER_PACKAGE))
NONCE="$(date +%s%N)-$$"
node - "$WS" "$TASKS" "$PER_PACKAGE" "$NONCE" "$NPM_V" <<'EOF'
const fs = require("fs"), path = require("path");
const [ws, tasks, per, nonce, npmVersion] = process.argv.slice(2);
const n = Number(tasks), perPackage = Number(per);
const packages = Math.ceil(n / perPackage);
const names = Array.from({ length: packages }, (_, p) => "p" + String(p).padStart(2, "0"));
const json = (file, value) => fs.writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
json(path.join(ws, "package.json"), {
  name: "bench", private: true, packageManager: "npm@" + npmVersion, workspaces: names,
});
// The root turbo.json only says where the tasks are configured: each package's own
// turbo.json (a Package Configuration, "extends": ["//"]) defines its 50 tasks.
json(path.join(ws, "turbo.json"), { $schema: "https://turborepo.dev/schema.json", tasks: {} });
names.forEach((name, p) => {
  const dir = path.join(ws, name);
  fs.mkdirSync(path.join(dir, "src"), { recursive: true });
  const scripts = {}, config = {};
  for (let k = 0; k < Math.min(perPackage, n - p * perPackage); k++) {
    const kk = String(k).padStart(2, "0");
    fs.writeFileSync(path.join(dir, "src", k + ".txt"), `${nonce} ${p}/${k}\n`.repeat(20));
    // One small process writing a checksum line of the source (npm runs it with sh).
    scripts["t" + kk] = `mkdir -p out && cksum src/${k}.txt > out/${kk}.sum`;
    config["t" + kk] = { inputs: [`src/${k}.txt`], outputs: [`out/${kk}.sum`] };
  }
  json(path.join(dir, "package.json"), { name, version: "0.0.0", private: true, scripts });
  json(path.join(dir, "turbo.json"), { extends: ["//"], tasks: config });
});
EOF
# turbo reads the npm lockfile to build its package graph: let npm write one (no
# dependencies, only the workspace links; offline).
(cd "$WS" && npm install --offline --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
[[ -f "$WS/package-lock.json" ]] || { log "npm wrote no package-lock.json"; exit 1; }

TASK_NAMES=()
for ((k = 0; k < PER_PACKAGE && k < TASKS; k++)); do TASK_NAMES+=("$(printf 't%02d' "$k")"); done

export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 TURBO_NO_UPDATE_NOTIFIER=1 \
  TURBO_PRINT_VERSION_DISABLED=1 TURBO_GLOBAL_WARNING_DISABLED=1 TURBO_PLATFORM_ENV_DISABLED=1
export TURBO_API=$API TURBO_TOKEN=$TOKEN TURBO_TEAM=team
unset TURBO_CACHE_DIR TURBO_REMOTE_ONLY TURBO_FORCE TURBO_CACHE TURBO_REMOTE_CACHE_READ_ONLY TURBO_LOGIN || true

RUN_OUT="$DIR/run.out"
LAST_SECONDS=
# turbo run ... ; seconds in LAST_SECONDS, its output in $RUN_OUT, the summary's path
# in LAST_SUMMARY.
turbo_run() {
  rm -rf "$WS/.turbo/runs"
  local t0 t1
  t0=$(now)
  if ! (cd "$WS" && "$TURBO" run "${TASK_NAMES[@]}" --concurrency 2 --ui stream \
    --output-logs hash-only --summarize --no-update-notifier "$@") >"$RUN_OUT" 2>&1; then
    log "turbo failed:"
    tail -50 "$RUN_OUT" >&2
    exit 1
  fi
  t1=$(now)
  LAST_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  LAST_SUMMARY=$(ls "$WS"/.turbo/runs/*.json)
}

# Cache statuses of the last run's summary: "<tasks> <local hits> <remote hits> <misses>".
summary_counts() {
  node -e '
    const s = require(process.argv[1]);
    let local = 0, remote = 0, miss = 0;
    for (const t of s.tasks) {
      const c = t.cache || {};
      if (c.status !== "HIT") miss++;
      else if (c.source === "REMOTE") remote++;
      else local++;
    }
    console.log(s.tasks.length, local, remote, miss);
  ' "$LAST_SUMMARY"
}

# Requests the server logged from line $1 on: "<total> <GET 200 bytes> <breakdown>".
server_requests() {
  node -e '
    const fs = require("fs"), path = require("path");
    const [logFile, from, storage] = process.argv.slice(1);
    const lines = fs.readFileSync(logFile, "utf8").split("\n").slice(Number(from));
    const reqs = new Map();
    for (const line of lines) {
      let e; try { e = JSON.parse(line) } catch { continue }
      if (e.message === "incoming request" && e.req) reqs.set(e.reqId, { m: e.req.method, u: e.req.url });
      else if (e.message === "request completed" && reqs.has(e.reqId)) reqs.get(e.reqId).s = e.res && e.res.statusCode;
    }
    // Artifact sizes, by hash, from the local storage (team directory / hash).
    const sizes = new Map();
    const walk = d => { for (const f of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, f.name);
      if (f.isDirectory()) walk(p); else sizes.set(f.name, fs.statSync(p).size);
    } };
    walk(storage);
    const kinds = {};
    let bytes = 0;
    for (const r of reqs.values()) {
      const route = r.u.split("?")[0].replace(/\/v8\/artifacts\/[0-9a-f]{8,}$/, "/v8/artifacts/:hash");
      const k = `${r.m} ${route} ${r.s}`;
      kinds[k] = (kinds[k] || 0) + 1;
      if (r.m === "GET" && r.s === 200 && route === "/v8/artifacts/:hash")
        bytes += sizes.get(r.u.split("?")[0].split("/").pop()) || 0;
    }
    const breakdown = Object.entries(kinds).map(([k, v]) => `${v} x ${k}`).join(", ");
    console.log(reqs.size, bytes, breakdown || "none");
  ' "$SERVER_LOG" "$1" "$STORAGE"
}
log_lines() { wc -l <"$SERVER_LOG"; }

# Moves the local cache and every package's out/ into the graveyard ($1: the round).
bury() {
  local dest="$GRAVE/$1"
  mkdir -p "$dest"
  if [[ "${2:-}" == cache ]]; then
    [[ -d "$WS/.turbo/cache" ]] && mv "$WS/.turbo/cache" "$dest/turbo-cache"
    [[ -d "$WS/node_modules/.cache/turbo" ]] && mv "$WS/node_modules/.cache/turbo" "$dest/nm-cache-turbo"
  fi
  local p
  for p in "$WS"/p*/; do
    p=${p%/}
    [[ -d "$p/out" ]] && mv "$p/out" "$dest/$(basename "$p")"
  done
  return 0
}

# Checks every task's output is in the workspace and holds the checksum of its source.
check_outputs() {
  local missing
  missing=$(cd "$WS" && for p in p*/; do
    for f in "$p"src/*.txt; do
      k=$(basename "$f" .txt)
      out=$(printf '%sout/%02d.sum' "$p" "$k")
      [[ -f "$out" ]] || { echo "$out"; continue; }
      [[ "$(cat "$out")" == "$(cd "$p" && cksum "src/$k.txt")" ]] || echo "$out (wrong)"
    done
  done | head -5)
  [[ -z "$missing" ]] || { log "outputs missing or wrong after $1: $missing"; exit 1; }
}

# --- the writer run ----------------------------------------------------------------
log "writer run: $TASKS tasks in $PACKAGES packages, every task executed and uploaded"
from=$(log_lines)
turbo_run
read -r n l r m <<<"$(summary_counts)"
[[ "$n" == "$TASKS" && "$m" == "$TASKS" ]] ||
  { log "writer run: expected $TASKS misses, got tasks=$n local=$l remote=$r miss=$m"; exit 1; }
check_outputs "the writer run"
WRITER_SECONDS=$LAST_SECONDS
read -r wreq _ wkinds <<<"$(server_requests "$from")"
ARTIFACTS=$(find "$STORAGE" -type f | wc -l)
STORED_BYTES=$(find "$STORAGE" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
log "writer run: $(awk -v t="$WRITER_SECONDS" -v n="$TASKS" 'BEGIN { printf "%.1f s, %.1f ms/task", t, t * 1e3 / n }'); server: $wreq requests ($wkinds); storage holds $ARTIFACTS artifacts, $STORED_BYTES bytes"
if ((ARTIFACTS < TASKS)); then
  log "the server holds $ARTIFACTS artifacts, fewer than the $TASKS tasks"
  exit 1
fi

# --- the rounds --------------------------------------------------------------------
REMOTE=() LOCAL=() REQUESTS=() BYTES=()
for ((round = 0; round < ROUNDS; round++)); do
  # Remote hits: empty local cache, no outputs.
  bury "$round-remote" cache
  from=$(log_lines)
  turbo_run
  read -r n l r m <<<"$(summary_counts)"
  [[ "$n" == "$TASKS" && "$r" == "$TASKS" ]] ||
    { log "round $round: expected $TASKS remote hits, got tasks=$n local=$l remote=$r miss=$m"; tail -20 "$RUN_OUT" >&2; exit 1; }
  grep -q "FULL TURBO" "$RUN_OUT" || log "round $round: no FULL TURBO in turbo's output"
  check_outputs "round $round (remote)"
  t_remote=$LAST_SECONDS
  # The server's log may trail the run by a moment: let it settle.
  sleep 1
  read -r nreq nbytes kinds <<<"$(server_requests "$from")"
  REMOTE+=("$(awk -v t="$t_remote" -v n="$TASKS" 'BEGIN { printf "%.4f", t * 1e3 / n }')")
  REQUESTS+=("$(awk -v q="$nreq" -v n="$TASKS" 'BEGIN { printf "%.3f", q / n }')")
  BYTES+=("$(awk -v b="$nbytes" -v n="$TASKS" 'BEGIN { printf "%.1f", b / n }')")

  # Local hits: the cache just filled, no outputs.
  bury "$round-local"
  from=$(log_lines)
  turbo_run
  read -r n l r m <<<"$(summary_counts)"
  [[ "$n" == "$TASKS" && "$l" == "$TASKS" ]] ||
    { log "round $round: expected $TASKS local hits, got tasks=$n local=$l remote=$r miss=$m"; exit 1; }
  check_outputs "round $round (local)"
  t_local=$LAST_SECONDS
  sleep 1
  read -r lreq _ lkinds <<<"$(server_requests "$from")"
  LOCAL+=("$(awk -v t="$t_local" -v n="$TASKS" 'BEGIN { printf "%.4f", t * 1e3 / n }')")
  log "round $round: remote hits ${t_remote} s (${REMOTE[-1]} ms/task; server: $nreq requests: $kinds; $nbytes bytes of artifacts); local hits ${t_local} s (${LOCAL[-1]} ms/task; server: $lreq requests${lkinds:+: $lkinds})"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "turbo $TURBO_V, turborepo-remote-cache $SERVER_V (node $(node --version), npm $NPM_V); $TASKS tasks, $PACKAGES packages, concurrency 2, medians of $ROUNDS rounds"
echo "turbo writer run: $(awk -v t="$WRITER_SECONDS" -v n="$TASKS" 'BEGIN { printf "%.2f", t * 1e3 / n }') ms/task (executed and uploaded; $ARTIFACTS artifacts, $STORED_BYTES bytes stored)"
printf 'turbo remote hit: %.2f ms/task\n' "$(median "${REMOTE[@]}")"
printf 'turbo local hit: %.2f ms/task\n' "$(median "${LOCAL[@]}")"
printf 'turbo requests/remote hit: %s\n' "$(median "${REQUESTS[@]}")"
printf 'turbo bytes/remote hit: %.0f\n' "$(median "${BYTES[@]}")"
echo "(rounds: remote ${REMOTE[*]} ms/task; local ${LOCAL[*]} ms/task; requests/hit ${REQUESTS[*]}; bytes/hit ${BYTES[*]})"
