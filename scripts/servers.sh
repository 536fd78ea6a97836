# The real cache servers the remote cache tests run against, on free loopback ports:
#   - nginx (Debian's package) serving the Bazel HTTP cache layout with WebDAV PUT on a
#     temporary directory;
#   - BuildGrid (PyPI, pinned, in a venv under target/servers) as a stock REAPI v2 cache
#     server: in-memory CAS, action cache and ByteStream.
# Sourced by scripts/test.sh: `start_servers` installs and starts both and exports
#   WASK_TEST_HTTP_CACHE   http://127.0.0.1:PORT
#   WASK_TEST_HTTP_STORE   the directory nginx stores /ac/ and /cas/ in
#   WASK_TEST_REAPI        grpc://127.0.0.1:PORT
#   WASK_TEST_NGINX        how to start another nginx (a script: PORT STORE -> runs it)
#   WASK_TEST_BGD          how to start another BuildGrid (a script: PORT -> runs it)
#   WASK_TEST_HTTPS_CACHE  https://127.0.0.1:PORT, nginx again, requiring a client
#                          certificate (mutual TLS)
#   WASK_TEST_GRPCS        grpcs://127.0.0.1:PORT, BuildGrid again, requiring one too
#   WASK_TEST_TLS_DIR      their certificates, made for this run by a CA of its own:
#                          ca.pem, client.pem and client.key (another CA: other-ca.pem)
# and `stop_servers` (run on exit) stops them. Under CI=true a server that cannot be
# installed or started fails the run; elsewhere its tests say they were skipped.

servers_dir="$PWD/target/servers"
buildgrid_version=0.4.4
server_pids=()

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until PORT on loopback accepts connections, at most SECONDS.
wait_for_port() {
  local port=$1 seconds=$2 i
  for ((i = 0; i < seconds * 10; i++)); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

server_failed() {
  if [ "${CI:-}" = "true" ]; then
    echo "error: $1 (under CI=true a server that cannot start fails the run)" >&2
    exit 1
  fi
  echo "warning: $1; its remote cache tests will be skipped" >&2
}

install_nginx() {
  command -v nginx >/dev/null 2>&1 && return 0
  [ -x /usr/sbin/nginx ] && return 0
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null 2>&1 ||
      { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null 2>&1; }
  else
    sudo -n apt-get install -y nginx >/dev/null 2>&1
  fi
}

# A script that runs nginx in the foreground on PORT, storing in STORE: the tests start
# private servers with it too (one they kill mid-run).
write_nginx_runner() {
  cat >"$servers_dir/run-nginx" <<'EOF'
#!/usr/bin/env bash
# run-nginx [--tls DIR] PORT STORE: nginx in the foreground, the Bazel HTTP cache layout
# under STORE; with --tls, over TLS (DIR/server.pem) requiring a client certificate
# DIR/ca.pem signed.
set -euo pipefail
tls=""
if [ "$1" = --tls ]; then tls=$2; shift 2; fi
port=$1 store=$2
listen="listen 127.0.0.1:$port;"
if [ -n "$tls" ]; then
  listen="listen 127.0.0.1:$port ssl;
    ssl_certificate $tls/server.pem;
    ssl_certificate_key $tls/server.key;
    ssl_client_certificate $tls/ca.pem;
    ssl_verify_client on;"
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/wask-nginx.XXXXXX")
mkdir -p "$store" "$dir/tmp"
chmod 755 "$dir"
user=""
if [ "$(id -u)" = 0 ]; then
  # nginx's workers run as nobody: the store and its temp directory must be theirs.
  chown -R nobody:nogroup "$store" "$dir/tmp"
  user="user nobody nogroup;"
fi
cat >"$dir/nginx.conf" <<CONF
daemon off;
$user
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    $listen
    root $store;
    client_max_body_size 0;
    location ~ "^/(ac|cas)/[0-9a-f]{64}\$" {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }
    location / { return 404; }
  }
}
CONF
nginx=$(command -v nginx || echo /usr/sbin/nginx)
exec "$nginx" -c "$dir/nginx.conf" -e "$dir/error.log"
EOF
  chmod +x "$servers_dir/run-nginx"
}

start_nginx() {
  if ! install_nginx; then
    server_failed "nginx could not be installed (apt-get install nginx)"
    return
  fi
  write_nginx_runner
  local port store
  port=$(free_port)
  # Under /tmp: nginx's workers (nobody) must reach it through every parent.
  store=$(mktemp -d "${TMPDIR:-/tmp}/wask-http-store.XXXXXX")
  "$servers_dir/run-nginx" "$port" "$store" >"$servers_dir/nginx.log" 2>&1 &
  server_pids+=($!)
  if ! wait_for_port "$port" 10; then
    server_failed "nginx did not start: $(tail -3 "$servers_dir/nginx.log")"
    return
  fi
  export WASK_TEST_HTTP_CACHE="http://127.0.0.1:$port"
  export WASK_TEST_HTTP_STORE="$store"
  export WASK_TEST_NGINX="$servers_dir/run-nginx"
  echo "nginx (Bazel HTTP cache layout) on $WASK_TEST_HTTP_CACHE"
}

install_buildgrid() {
  local venv="$servers_dir/buildgrid"
  if [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("buildgrid"))' 2>/dev/null)" = "$buildgrid_version" ]; then
    return 0
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "buildgrid==$buildgrid_version"
}

write_buildgrid_runner() {
  cat >"$servers_dir/run-bgd" <<EOF
#!/usr/bin/env bash
# run-bgd [--tls DIR] PORT: BuildGrid in the foreground, a REAPI v2 cache (CAS, action
# cache, ByteStream) in memory, instance ""; with --tls, over TLS (DIR/server.pem)
# requiring a client certificate DIR/ca.pem signed.
set -euo pipefail
tls=""
if [ "\$1" = --tls ]; then tls=\$2; shift 2; fi
port=\$1
dir=\$(mktemp -d "\${TMPDIR:-/tmp}/wask-bgd.XXXXXX")
channel="insecure-mode: true"
if [ -n "\$tls" ]; then
  channel="insecure-mode: false
    credentials:
      tls-server-key: \$tls/server.key
      tls-server-cert: \$tls/server.pem
      tls-client-certs: \$tls/ca.pem"
fi
cat >"\$dir/bgd.yml" <<CONF
server:
  - !channel
    address: "127.0.0.1:\$port"
    \$channel
authorization:
  method: none
storages:
  - !lru-storage &cas
    size: 512MB
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: ''
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
CONF
exec "$servers_dir/buildgrid/bin/bgd" server start "\$dir/bgd.yml"
EOF
  chmod +x "$servers_dir/run-bgd"
}

start_buildgrid() {
  if ! install_buildgrid; then
    server_failed "BuildGrid $buildgrid_version could not be installed from PyPI"
    return
  fi
  write_buildgrid_runner
  local port
  port=$(free_port)
  "$servers_dir/run-bgd" "$port" >"$servers_dir/bgd.log" 2>&1 &
  server_pids+=($!)
  if ! wait_for_port "$port" 60; then
    server_failed "BuildGrid did not start: $(tail -5 "$servers_dir/bgd.log")"
    return
  fi
  export WASK_TEST_REAPI="grpc://127.0.0.1:$port"
  export WASK_TEST_BGD="$servers_dir/run-bgd"
  echo "BuildGrid $buildgrid_version (REAPI v2) on $WASK_TEST_REAPI"
}

# A CA made for this run, a certificate for 127.0.0.1 and a client certificate it
# signed, and another CA that signed neither.
make_tls_files() {
  local d=$1
  rm -rf "$d" && mkdir -p "$d"
  (
    cd "$d"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=wask test CA"
    openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=another CA"
    local name usage
    for name in server client; do
      usage=serverAuth
      [ "$name" = client ] && usage=clientAuth
      openssl req "${ec[@]}" -keyout "$name.key" -out "$name.csr" -subj "/CN=wask test $name"
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=%s\n' "$usage" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out "$name.pem" -days 2 -extfile "$name.ext"
    done
  ) >"$d/openssl.log" 2>&1
}

# nginx and BuildGrid again, over TLS with client certificates (after the plain ones,
# whose install steps they reuse).
start_tls_servers() {
  local tls="$servers_dir/tls" port store
  if ! command -v openssl >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y openssl >/dev/null 2>&1 || true
  fi
  if ! command -v openssl >/dev/null 2>&1 || ! make_tls_files "$tls"; then
    server_failed "the test certificates could not be made (openssl): $(tail -3 "$tls/openssl.log" 2>/dev/null)"
    return
  fi
  export WASK_TEST_TLS_DIR="$tls"
  if [ -n "${WASK_TEST_NGINX:-}" ]; then
    port=$(free_port)
    store=$(mktemp -d "${TMPDIR:-/tmp}/wask-https-store.XXXXXX")
    "$servers_dir/run-nginx" --tls "$tls" "$port" "$store" >"$servers_dir/nginx-tls.log" 2>&1 &
    server_pids+=($!)
    if wait_for_port "$port" 10; then
      export WASK_TEST_HTTPS_CACHE="https://127.0.0.1:$port"
      echo "nginx over mutual TLS on $WASK_TEST_HTTPS_CACHE"
    else
      server_failed "nginx over TLS did not start: $(tail -3 "$servers_dir/nginx-tls.log")"
    fi
  fi
  if [ -n "${WASK_TEST_BGD:-}" ]; then
    port=$(free_port)
    "$servers_dir/run-bgd" --tls "$tls" "$port" >"$servers_dir/bgd-tls.log" 2>&1 &
    server_pids+=($!)
    if wait_for_port "$port" 60; then
      export WASK_TEST_GRPCS="grpcs://127.0.0.1:$port"
      echo "BuildGrid over mutual TLS on $WASK_TEST_GRPCS"
    else
      server_failed "BuildGrid over TLS did not start: $(tail -5 "$servers_dir/bgd-tls.log")"
    fi
  fi
}

start_servers() {
  mkdir -p "$servers_dir"
  start_nginx
  start_buildgrid
  start_tls_servers
  trap stop_servers EXIT
}

stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    pkill -P "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
