#!/usr/bin/env bash
# PostgreSQL and Redis (Debian's packages) for tests and for trying a cluster: started in a
# directory of their own on loopback, on free ports, never as system services.
#
#   scripts/services.sh start DIR             starts both; writes DIR/services.env
#   scripts/services.sh stop DIR              stops both (and forgets nothing on disk)
#   scripts/services.sh restart-redis DIR     stops Redis and starts it again, same port
#   scripts/services.sh restart-postgres DIR  the same for PostgreSQL (fast shutdown)
#   scripts/services.sh stop-postgres DIR | start-postgres DIR
#   scripts/services.sh start DIR --until-gone PID   ... and stops them once PID has exited
#
# Ports are picked among free ones in PORT_RANGE (default: from 20000 up to the kernel's
# range for outgoing connections, see scripts/env.sh).
#
# DIR/services.env sets FLACK_TEST_POSTGRES_URL (a superuser's URL: tests create a database
# each) and FLACK_TEST_REDIS_URL. PostgreSQL refuses to run as root: as root, it runs as the
# `postgres` user the Debian package creates.
set -euo pipefail

self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
# shellcheck source=scripts/env.sh
source "$(dirname "$self")/env.sh"
cmd=${1:?usage: services.sh start|stop|restart-redis|restart-postgres DIR}
dir=${2:?usage: services.sh $cmd DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
watch_pid=
if [ "${3:-}" = --until-gone ]; then watch_pid=${4:?--until-gone needs a PID}; fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pg_bin" ] || { echo "services: PostgreSQL is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "services: redis-server is not installed (scripts/setup.sh installs it)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A loopback port nothing listens on, in PORT_RANGE.
range=$PORT_RANGE
port_min=${range%-*} port_max=${range#*-}
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((port_min + RANDOM % (port_max - port_min + 1)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "services: no free port found" >&2
  exit 1
}

wait_for() {
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return; fi
    sleep 0.1
  done
  echo "services: $what did not start; its log:" >&2
  cat "$dir/$what.log" >&2 || true
  exit 1
}

start_postgres() {
  local port
  port=$(cat "$dir/postgres.port")
  as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/postgres.log" -w -t 30 \
    -o "-p $port -k $dir/pgsock -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300 -c shared_buffers=128MB" \
    start >/dev/null
  wait_for postgres "$pg_bin/pg_isready" -h 127.0.0.1 -p "$port"
}

stop_postgres() {
  [ -d "$dir/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
}

start_redis() {
  local port
  port=$(cat "$dir/redis.port")
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  wait_for redis redis-cli -p "$port" ping
}

stop_redis() {
  if [ -f "$dir/redis.pid" ]; then
    local pid
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$dir/redis.pid"
  fi
}

case $cmd in
  start)
    free_port >"$dir/postgres.port"
    # Nothing listens on the first until PostgreSQL starts: do not pick it twice.
    until redis_port=$(free_port) && [ "$redis_port" != "$(cat "$dir/postgres.port")" ]; do :; done
    echo "$redis_port" >"$dir/redis.port"
    mkdir -p "$dir/pg" "$dir/pgsock"
    [ "$(id -u)" = 0 ] && chown -R postgres "$dir/pg" "$dir/pgsock" && chmod 755 "$dir"
    touch "$dir/postgres.log" && { [ "$(id -u)" != 0 ] || chown postgres "$dir/postgres.log"; }
    as_pg "$pg_bin/initdb" -D "$dir/pg" -U flack --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    start_postgres
    start_redis
    cat >"$dir/services.env" <<EOF
export FLACK_TEST_POSTGRES_URL=postgres://flack@127.0.0.1:$(cat "$dir/postgres.port")/postgres
export FLACK_TEST_REDIS_URL=redis://127.0.0.1:$(cat "$dir/redis.port")/
EOF
    if [ -n "$watch_pid" ]; then
      # A test process that dies without stopping them must not leave servers behind.
      # (Unless that process removed DIR itself: nothing is left to stop.)
      setsid bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done
        if [ -d '$dir' ]; then '$self' stop '$dir'; rm -rf '$dir'; fi" \
        </dev/null >/dev/null 2>&1 &
    fi
    ;;
  stop) stop_redis; stop_postgres ;;
  restart-redis) stop_redis; start_redis ;;
  restart-postgres) stop_postgres; start_postgres ;;
  stop-postgres) stop_postgres ;;
  start-postgres) start_postgres ;;
  *) echo "services: unknown command $cmd" >&2; exit 2 ;;
esac
