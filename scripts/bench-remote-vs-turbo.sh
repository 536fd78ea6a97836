#!/usr/bin/env bash
# wask's remote-hit bench and Turborepo's, back to back in one script on the same
# machine, with the ratios: `bash scripts/bench-remote-vs-turbo.sh [TASKS [ROUNDS]]`.
# Starts the test servers (scripts/servers.sh) for wask; Turborepo's own cache server
# is started by scripts/bench-turbo-remote.sh. Needs the example plugins built
# (bash scripts/build-guests.sh rust), node and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tasks=${1:-1000} rounds=${2:-3}
source scripts/servers.sh
start_servers >&2
wask_out=$(cargo bench --locked -p wask --bench remote -- "$tasks" "$rounds" 2>/dev/null | tail -3)
stop_servers
turbo_out=$(bash scripts/bench-turbo-remote.sh "$tasks" "$rounds")
echo "$wask_out"
echo "$turbo_out"
turbo_remote=$(sed -n 's/^turbo remote hit: \([0-9.]*\) ms.*/\1/p' <<<"$turbo_out")
turbo_requests=$(sed -n 's/^turbo requests\/remote hit: \([0-9.]*\).*/\1/p' <<<"$turbo_out")
# wask's rows: server, local, remote (ms), ..., requests.
awk -v tr="$turbo_remote" -v tq="$turbo_requests" '
  / ms / {
    name = $1 " " $2
    for (i = 1; i <= NF; i++) if ($i == "ms") { ms[++n] = $(i - 1) }
    printf "%s: remote hit %.2f ms vs turbo %.2f ms = %.2fx; requests %s vs %s\n", name, ms[2], tr, ms[2] / tr, $(NF - 1), tq
    n = 0
  }' <<<"$wask_out"
