#!/usr/bin/env bash
# A Flack cluster on loopback, in a directory of its own: three nodes sharing one PostgreSQL
# database and one Redis (started by scripts/services.sh), behind nginx.
#
#   scripts/cluster.sh start DIR [--until-gone PID]  start everything; print the URL
#   scripts/cluster.sh status DIR                   what runs, and whether it answers /readyz
#   scripts/cluster.sh restart-node DIR N           stop node N (SIGTERM: it drains) and start it again
#   scripts/cluster.sh stop DIR                     nginx, then the nodes, then PostgreSQL and Redis
#
# With --until-gone PID, everything is stopped once process PID has exited.
#
# Settings, from the environment:
#   FLACK_BIN      the server (default: target/release/flack, as `cargo leptos build --release`
#                  makes it; it serves the site from target/site)
#   CLUSTER_PORT   nginx's port (default: a free one)
#   CLUSTER_NODES  how many nodes (default 3)
#   CLUSTER_STORE  postgres (default): the nodes share one PostgreSQL database.
#                  sqlite: each node on a SQLite file of its own. Only to try the proxy, the
#                  drain and the Redis hub without PostgreSQL: the nodes do NOT share history
#                  or identities, so this is not a working cluster.
#   PORT_RANGE     where free ports are looked for (default: from 20000 up to the kernel's
#                  range for outgoing connections, see scripts/env.sh)
#   FLACK_*        any Flack setting, passed to every node (e.g. FLACK_LOG=debug)
#
# In DIR: cluster.env (CLUSTER_URL, CLUSTER_NODE_URLS, for scripts), nginx.conf and its logs,
# nodeN.log / nodeN.pid / nodeN.port, and what scripts/services.sh keeps there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
self="$root/scripts/$(basename "$0")"
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
cmd=${1:?usage: cluster.sh start|status|restart-node|stop DIR}
dir=${2:?usage: cluster.sh $cmd DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

nodes=${CLUSTER_NODES:-3}
# A cluster already started keeps the number it was started with.
if [ "$cmd" != start ] && [ -f "$dir/nodes" ]; then nodes=$(cat "$dir/nodes"); fi
store=${CLUSTER_STORE:-postgres}
bin=${FLACK_BIN:-$root/target/release/flack}
if [ "$cmd" != start ] && [ -z "${FLACK_BIN:-}" ] && [ -f "$dir/bin" ]; then bin=$(cat "$dir/bin"); fi
nginx=${NGINX:-/usr/sbin/nginx}
range=$PORT_RANGE
port_min=${range%-*} port_max=${range#*-}
export PORT_RANGE=$range

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# A loopback port nothing listens on and that this script has not handed out already.
taken=" "
free_port() {
  local port
  for _ in $(seq 1 500); do
    port=$((port_min + RANDOM % (port_max - port_min + 1)))
    case $taken in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      taken="$taken$port "
      echo "$port"
      return
    fi
  done
  die "no free port in $range"
}

ready() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits until 127.0.0.1:PORT answers /readyz, or the process in PIDFILE is gone.
wait_ready() {
  local what=$1 port=$2 pidfile=$3 log=$4
  for _ in $(seq 1 300); do
    ready "$port" && return
    if ! alive "$pidfile"; then
      tail -n 30 "$log" >&2
      if [ "$store" = postgres ] && grep -q "bad configuration.*database_url" "$log"; then
        say "this server has no PostgreSQL store yet; CLUSTER_STORE=sqlite tries the proxy without one" >&2
      fi
      die "$what exited during start-up (log: $log)"
    fi
    sleep 0.2
  done
  tail -n 30 "$log" >&2
  die "$what did not answer /readyz on port $port within 60 s (log: $log)"
}

# Starts node N on the port in DIR/nodeN.port, with the settings in DIR/node.env.
start_node() {
  local n=$1 port
  port=$(cat "$dir/node$n.port")
  (
    cd "$root"
    # shellcheck disable=SC1091
    source "$dir/node.env"
    # This script's own setting, not the server's (which refuses FLACK_* it does not know).
    unset FLACK_BIN
    export FLACK_ADDRESS="127.0.0.1:$port"
    if [ "$FLACK_STORE" = sqlite ]; then export FLACK_DATABASE="$dir/node$n.db"; fi
    echo "--- node $n started $(date -u +%FT%TZ) on 127.0.0.1:$port" >>"$dir/node$n.log"
    exec nohup "$bin" </dev/null >>"$dir/node$n.log" 2>&1
  ) &
  echo $! >"$dir/node$n.pid"
}

# Stops node N: SIGTERM, then it drains (closes its WebSockets with 1012, finishes requests)
# and exits; SIGKILL if it is still there after its drain time and some.
stop_node() {
  local n=$1 pidfile="$dir/node$1.pid" pid
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  local wait_secs=$(( ${FLACK_SHUTDOWN_DRAIN_SECS:-10} + 5 ))
  for _ in $(seq 1 $((wait_secs * 10))); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  say "node $n did not stop within ${wait_secs} s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

write_nginx_conf() {
  local port=$1 n
  mkdir -p "$dir/nginx-temp"
  {
    echo "# Written by scripts/cluster.sh: nginx in front of the cluster's nodes."
    # As root, nginx's workers would run as nobody, who cannot write in DIR.
    if [ "$(id -u)" = 0 ]; then echo "user root;"; fi
    cat <<EOF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;

events {
  worker_connections 4096;
}

http {
  access_log $dir/nginx-access.log;
  client_body_temp_path $dir/nginx-temp/body;
  proxy_temp_path $dir/nginx-temp/proxy;
  fastcgi_temp_path $dir/nginx-temp/fastcgi;
  uwsgi_temp_path $dir/nginx-temp/uwsgi;
  scgi_temp_path $dir/nginx-temp/scgi;
  # Flack bounds request bodies itself (max_body_bytes).
  client_max_body_size 1m;

  # A WebSocket upgrade is passed on as one; anything else closes the upstream connection.
  map \$http_upgrade \$connection_upgrade {
    default upgrade;
    ''      close;
  }

  upstream flack {
    # Sockets are long-lived: the node with fewest open connections takes the next.
    least_conn;
EOF
    for n in $(seq 1 "$nodes"); do
      echo "    server 127.0.0.1:$(cat "$dir/node$n.port") max_fails=1 fail_timeout=2s;"
    done
    cat <<EOF
  }

  server {
    listen 127.0.0.1:$port;

    location / {
      proxy_pass http://flack;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      # The node checks the Host against its public_url.
      proxy_set_header Host \$http_host;
      # Believed because the nodes list 127.0.0.1 in trusted_proxies.
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      # A node that is stopping or gone refuses connections: try the next one. (nginx
      # retries a POST only when it was never sent, as here.)
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries $nodes;
      proxy_connect_timeout 2s;
      # WebSockets stay open for hours; the nodes ping every ping_interval_secs.
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      # Events go out as they come.
      proxy_buffering off;
    }
  }
}
EOF
  } >"$dir/nginx.conf"
}

start() {
  local watch_pid=${1:-}
  [ -x "$bin" ] || die "no server binary at $bin (build it: cargo leptos build --release; or set FLACK_BIN)"
  [ -x "$nginx" ] || die "nginx is not installed at $nginx (scripts/setup.sh installs it)"
  [ ! -f "$dir/cluster.env" ] || die "$dir holds a cluster already (scripts/cluster.sh stop $dir; or use another DIR)"
  case $store in postgres | sqlite) ;; *) die "CLUSTER_STORE is postgres or sqlite, not $store" ;; esac
  # A start that fails half-way stops what it started.
  trap '[ -f "$dir/cluster.env" ] || { say "start failed; stopping what was started"; stop >/dev/null 2>&1; }' EXIT

  say "starting PostgreSQL and Redis in $dir"
  "$root/scripts/services.sh" start "$dir"
  local pg_url redis_url db_url
  pg_url=$(source "$dir/services.env"; echo "$FLACK_TEST_POSTGRES_URL")
  redis_url=$(source "$dir/services.env"; echo "$FLACK_TEST_REDIS_URL")
  db_url="${pg_url%/postgres}/flack"
  if [ "$store" = postgres ]; then
    local pg_bin
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    "$pg_bin/psql" "$pg_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE flack" >/dev/null
  fi

  local port n
  port=${CLUSTER_PORT:-$(free_port)}
  taken="$taken$port "
  for n in $(seq 1 "$nodes"); do free_port >"$dir/node$n.port"; done
  echo "$nodes" >"$dir/nodes"
  echo "$bin" >"$dir/bin"
  local url="http://127.0.0.1:$port"

  # What every node is told (FLACK_* from the caller's environment apply too, unless named here).
  {
    echo "export FLACK_PUBLIC_URL=$url"
    echo "export FLACK_TRUSTED_PROXIES='[127.0.0.1]'"
    echo "export FLACK_REDIS_URL=$redis_url"
    if [ "$store" = postgres ]; then
      echo "export FLACK_STORE=postgres"
      echo "export FLACK_DATABASE_URL=$db_url"
    else
      echo "export FLACK_STORE=sqlite"
    fi
    echo "export LEPTOS_OUTPUT_NAME=\${LEPTOS_OUTPUT_NAME:-flack}"
    echo "export LEPTOS_SITE_ROOT=\${LEPTOS_SITE_ROOT:-$root/target/site}"
    echo "export LEPTOS_SITE_PKG_DIR=\${LEPTOS_SITE_PKG_DIR:-pkg}"
  } >"$dir/node.env"

  for n in $(seq 1 "$nodes"); do start_node "$n"; done
  for n in $(seq 1 "$nodes"); do
    wait_ready "node $n" "$(cat "$dir/node$n.port")" "$dir/node$n.pid" "$dir/node$n.log"
    say "node $n ready on 127.0.0.1:$(cat "$dir/node$n.port") (log: $dir/node$n.log)"
  done

  write_nginx_conf "$port"
  "$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" \
    || die "nginx did not start (config: $dir/nginx.conf, log: $dir/nginx-error.log)"
  # The master writes its pid file once it has gone into the background.
  for _ in $(seq 1 50); do [ -f "$dir/nginx.pid" ] && break; sleep 0.1; done
  wait_ready nginx "$port" "$dir/nginx.pid" "$dir/nginx-error.log"

  local node_urls=""
  for n in $(seq 1 "$nodes"); do node_urls="$node_urls http://127.0.0.1:$(cat "$dir/node$n.port")"; done
  cat >"$dir/cluster.env" <<EOF
export CLUSTER_URL=$url
export CLUSTER_NODE_URLS="${node_urls# }"
EOF
  if [ -n "$watch_pid" ]; then
    # Whoever started it may die without stopping it: do not leave servers behind.
    setsid bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done
      if [ -f '$dir/cluster.env' ]; then '$self' stop '$dir'; fi" \
      </dev/null >/dev/null 2>&1 &
  fi
  say "$nodes nodes ($store store, Redis hub) behind nginx: $url"
}

status() {
  local n port
  [ -f "$dir/cluster.env" ] || { say "no cluster in $dir"; return 1; }
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  say "URL: $CLUSTER_URL"
  port=${CLUSTER_URL##*:}
  report "nginx" "$dir/nginx.pid" "$port"
  for n in $(seq 1 "$nodes"); do
    [ -f "$dir/node$n.port" ] || continue
    report "node $n" "$dir/node$n.pid" "$(cat "$dir/node$n.port")"
  done
  local pg_port redis_port
  pg_port=$(cat "$dir/postgres.port") redis_port=$(cat "$dir/redis.port")
  if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then say "redis       127.0.0.1:$redis_port  up"; else say "redis       127.0.0.1:$redis_port  DOWN"; fi
  local pg_bin
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then say "postgres    127.0.0.1:$pg_port  up"; else say "postgres    127.0.0.1:$pg_port  DOWN"; fi
}

report() {
  local what=$1 pidfile=$2 port=$3 state
  if ! alive "$pidfile"; then state="not running"
  elif ready "$port"; then state="ready (pid $(cat "$pidfile"))"
  else state="running, NOT ready (pid $(cat "$pidfile"))"
  fi
  printf 'cluster: %-11s 127.0.0.1:%s  %s\n' "$what" "$port" "$state"
}

stop() {
  local n
  if alive "$dir/nginx.pid"; then
    "$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" -s stop 2>/dev/null \
      || kill -TERM "$(cat "$dir/nginx.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$dir/nginx.pid" || break; sleep 0.1; done
  fi
  # All at once: each drains on its own.
  for n in $(seq 1 "$nodes"); do stop_node "$n" & done
  wait
  "$root/scripts/services.sh" stop "$dir"
  rm -f "$dir/cluster.env"
  say "stopped"
}

case $cmd in
  start)
    watch_pid=
    if [ "${3:-}" = --until-gone ]; then watch_pid=${4:?--until-gone needs a PID}; fi
    start "$watch_pid"
    ;;
  status) status ;;
  restart-node)
    n=${3:?usage: cluster.sh restart-node DIR N}
    [ -f "$dir/node$n.port" ] || die "no node $n in $dir"
    say "stopping node $n (it drains: sockets are closed with 1012 and reconnect elsewhere)"
    stop_node "$n"
    start_node "$n"
    wait_ready "node $n" "$(cat "$dir/node$n.port")" "$dir/node$n.pid" "$dir/node$n.log"
    say "node $n ready again on 127.0.0.1:$(cat "$dir/node$n.port")"
    ;;
  stop) stop ;;
  *) die "unknown command $cmd (start, status, restart-node, stop)" ;;
esac
