#!/usr/bin/env bash
# The benchmark: builds a release of Flack and the load generator, starts Flack and the
# reference relay (a bare axum + broadcast relay, see src/load/reference.rs) on 127.0.0.1,
# runs the standard plan against both and prints every figure with its ratio to the
# reference, ending with one markdown table.
#
#   scripts/bench.sh                   # build, then run the plan (a few minutes)
#   BENCH_SKIP_BUILD=1 scripts/bench.sh  # reuse target/release/flack, target/site, flack-load
#   BENCH_QUICK=1 scripts/bench.sh       # the same steps with tiny numbers (checks the script)
#
# With two or more cores the servers run on core 0 and the generator on core 1 (taskset), so
# that they do not compete. Flack runs with the memory store (and then with SQLite for the
# durable scenario) and with rate limits raised out of the way. The last step, abuse, starts
# a fresh Flack on SQLite with its default limits and runs each known attack against it from
# 127.0.0.2 while a normal user chats from 127.0.0.1. Everything listens on 127.0.0.1 only;
# every server started here is stopped on exit.
#
#   BENCH_ABUSE_SECONDS=10           # each attack's window (BENCH_QUICK: 1)
#   BENCH_ABUSE_MAX_GROWTH_MIB=1024  # an attack stops once Flack grew this much (protects the box)
#
# The cluster section (after the durable SQLite step) starts PostgreSQL and Redis
# (scripts/services.sh, pinned to the servers' core too) and, for N = 1, 2, 3 release nodes on
# them (ports BENCH_CLUSTER_PORT.., default 4200; a fresh database and Redis prefix each N),
# runs the SQLite step's max-rate and the big fan-out with the clients spread round-robin over
# the nodes, labelled flack-pg-redis-N. The CPU of every node, of PostgreSQL (postmaster and
# backends) and of Redis is reported per process. Its bars: one node on PostgreSQL + Redis
# keeps at least 0.5x one node on SQLite's max-rate; the big fan-out over three nodes loses
# nothing.
#
#   BENCH_ONLY=cluster scripts/bench.sh  # only the durable SQLite max-rate (the cluster's
#                                        # baseline) and the cluster section
#   BENCH_ONLY=main,sqlite,wasm,abuse,cluster  # any of the sections (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

HOST=127.0.0.1
FLACK_PORT=${BENCH_FLACK_PORT:-4000}
REF_PORT=${BENCH_REFERENCE_PORT:-4100}
FLACK=http://$HOST:$FLACK_PORT
REF=http://$HOST:$REF_PORT
LOAD=target/release/flack-load
CLUSTER_PORT=${BENCH_CLUSTER_PORT:-4200}
CLUSTER_NODES=(1 2 3)

# Which sections run: main (memory store and the reference), sqlite (durable max-rate), wasm,
# abuse, cluster. BENCH_ONLY=cluster also runs sqlite, the baseline of its first bar.
ONLY=${BENCH_ONLY:-all}
[[ $ONLY == cluster ]] && ONLY=sqlite,cluster
want() { [[ $ONLY == all || ,$ONLY, == *,$1,* ]]; }

# The standard plan's sizes; BENCH_QUICK=1 shrinks them to check the script in seconds.
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
  HIST=(--clients 4 --requests 50 --joins 50 --rate 50 --paced-requests 25)
  HIST_RICH=(--clients 4 --requests 20 --joins 0 --rate 50 --paced-requests 25)
  MAXRATE=(-c 10 -s 2 -d 1 --max-doublings 1 --bisect 1)
  BIG=(-c 50 -s 2 -r 5 -d 1)
  MEMBERS=(-m 3)
  CONNS=(-n 300 --hold 1)
  NAGLE=(-c 10 -s 2 -r 10 -d 1)
  ABUSE=(--quick --seconds "${BENCH_ABUSE_SECONDS:-1}")
else
  HIST=(--clients 32 --requests 2000 --joins 2000 --rate 100 --paced-requests 1000)
  HIST_RICH=(--clients 32 --requests 500 --joins 0 --rate 100 --paced-requests 1000)
  MAXRATE=(-c 100 -s 20 -d 3)
  BIG=(-c 1000 -s 10 -r 10 -d 10)
  # Every client a member of 20 channels; the messages flow in one of them.
  MEMBERS=(-m 20)
  CONNS=(-n 15000)
  NAGLE=(-c 100 -s 20 -r 10 -d 5)
  # 10 s windows: 100 of the user's messages each, so p99 is not simply the slowest one.
  ABUSE=(--seconds "${BENCH_ABUSE_SECONDS:-10}" --quiet-seconds 10)
fi
ABUSE+=(--max-growth-mib "${BENCH_ABUSE_MAX_GROWTH_MIB:-1024}")

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  echo "== building (cargo leptos build --release; cargo build --release --features load)"
  cargo leptos build --release
  cargo build --release --features load --bin flack-load
fi
for f in target/release/flack "$LOAD" target/site/pkg/flack.wasm; do
  [[ -e $f ]] || { echo "bench: $f is missing (build first)" >&2; exit 1; }
done

# Every socket is a file descriptor, in the generator and in the server: they inherit this.
# (flack-load does not raise its own limit: the crate has no libc dependency for setrlimit.)
ulimit -n "$(ulimit -Hn)"

if (( $(nproc) >= 2 )); then
  SERVER_CPU=(taskset -c 0)
  LOAD_CPU=(taskset -c 1)
  pinning="servers on core 0, generator on core 1"
else
  SERVER_CPU=()
  LOAD_CPU=()
  pinning="one core: servers and generator share it"
fi

work=$(mktemp -d /tmp/flack-bench.XXXXXX)
results=$work/results.log
: >"$results"
started_pids=()
services_dir=
# Signals every process given, then waits for each (all stop at once, not one by one).
stop_all() {
  local pid
  for pid in "$@"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  stop_all "${started_pids[@]}"
  if [[ -n $services_dir ]]; then
    scripts/services.sh stop "$services_dir" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most 10 s) until a URL answers and the process is still there.
wait_for() {
  local url=$1 pid=$2 i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "bench: process $pid exited; see $work/*.log" >&2; return 1; }
    if curl -sf -o /dev/null --max-time 1 "$url"; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench: $url did not answer within 10 s" >&2
  return 1
}

FLACK_PID=
REF_PID=
# Servers a step checks are still alive after it (the ones it measures).
watched_pids=()
# Rate limits out of the way, for the throughput steps; the abuse step keeps the defaults.
RAISED_LIMITS=(FLACK_RATE_LIMIT_PER_SEC=1000000 FLACK_RATE_LIMIT_BURST=1000000
  FLACK_FRAME_RATE_PER_SEC=1000000 FLACK_FRAME_BURST=1000000
  FLACK_SUBSCRIBE_RATE_PER_SEC=1000000 FLACK_SUBSCRIBE_BURST=1000000
  FLACK_JOIN_BYTES_PER_SEC_PER_IP=1000000000000 FLACK_JOIN_BYTES_BURST_PER_IP=1000000000000
  FLACK_NEW_IDENTITIES_PER_HOUR=1000000 FLACK_NEW_IDENTITIES_BURST=1000000
  FLACK_NEW_CHANNELS_PER_HOUR=1000000 FLACK_NEW_CHANNELS_BURST=1000000
  FLACK_MAX_CONNECTIONS=100000 FLACK_MAX_CONNECTIONS_PER_IP=100000)
start_flack() { # store database [FLACK_KEY=value...]
  local store=$1 database=$2
  shift 2
  env LEPTOS_SITE_ROOT=target/site LEPTOS_OUTPUT_NAME=flack \
    FLACK_ADDRESS=$HOST:$FLACK_PORT FLACK_STORE="$store" FLACK_DATABASE="$database" \
    FLACK_LOG=warn "$@" \
    "${SERVER_CPU[@]}" target/release/flack >>"$work/flack-$store.log" 2>&1 &
  FLACK_PID=$!
  started_pids+=("$FLACK_PID")
  wait_for "$FLACK/favicon.svg" "$FLACK_PID"
  echo "Flack ($store store${*:+, $*}) is pid $FLACK_PID on $FLACK"
  watched_pids=("$FLACK_PID" ${REF_PID:+"$REF_PID"})
}

stop_flack() {
  stop_all "$FLACK_PID"
  watched_pids=(${REF_PID:+"$REF_PID"})
  settle_disk
}

# Writes the page cache still holds go to disk now, between sections, so that the kernel's
# write-back of one section (SQLite's commits do not wait for the disk) is not done during
# the next one, where PostgreSQL's commits wait for the disk. Measured on this VM it was a
# few megabytes: a precaution more than a cure.
settle_disk() {
  echo "   (flushing $(awk '/^Dirty:/ {print $2}' /proc/meminfo) kB of dirty pages before the next section)"
  sync
}

start_reference() { # port pid-variable [flags...]
  local port=$1 var=$2
  shift 2
  "${SERVER_CPU[@]}" "$LOAD" reference --addr "$HOST:$port" "$@" >>"$work/reference-$port.log" 2>&1 &
  local pid=$!
  started_pids+=("$pid")
  wait_for "http://$HOST:$port/" "$pid"
  printf -v "$var" '%s' "$pid"
  echo "reference relay ($*) is pid $pid on http://$HOST:$port"
}

failures=0
# Runs one step of the plan with the generator pinned; its output goes to the screen and
# its RESULT lines to the summary. A failed step is reported and the plan goes on.
step() {
  local name=$1 t0=$SECONDS
  shift
  echo
  echo "== $name"
  if "${LOAD_CPU[@]}" "$LOAD" "$@" | tee -a "$results"; then
    echo "   ($name: $((SECONDS - t0)) s)"
  else
    echo "bench: step '$name' failed" >&2
    failures=$((failures + 1))
  fi
  for pid in "${watched_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "bench: server $pid died during '$name'" >&2; exit 1; }
  done
}

echo "== machine: $(nproc) cores ($pinning), $(uname -sr), open files $(ulimit -n)"
echo "   load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
plan_start=$SECONDS

if want main; then
start_flack memory "$work/unused.db" "${RAISED_LIMITS[@]}"
flack_args=(--flack "$FLACK" --flack-pid "$FLACK_PID")
# The reference serves a real Flack channel page with 100 messages at /page.
"${LOAD_CPU[@]}" "$LOAD" page-snapshot --flack "$FLACK" --out "$work/page.html"
# Same socket settings as Flack (TCP_NODELAY on every connection).
start_reference "$REF_PORT" REF_PID --page-file "$work/page.html" --nodelay
watched_pids=("$FLACK_PID" "$REF_PID")
ref_args=(--reference "$REF" --reference-pid "$REF_PID")

# History first, while the sidebar (every channel) is short; later steps create channels.
step "history: channel page with 100 messages (saturated, then paced at a steady rate), and socket joins" \
  history "${flack_args[@]}" "${ref_args[@]}" "${HIST[@]}"
# The same page when every message carries reactions and a thread (Flack only: the reference
# serves the plain page above).
step "history: channel page with 100 messages with reactions and threads (paced)" \
  history "${flack_args[@]}" "${HIST_RICH[@]}" --rich
step "max-rate: C=100 S=20, highest R with zero loss and p99 < 50 ms" \
  max-rate "${flack_args[@]}" "${ref_args[@]}" "${MAXRATE[@]}"
step "fanout: C=1000 S=10 R=10 D=10" \
  fanout "${flack_args[@]}" "${ref_args[@]}" "${BIG[@]}"
step "fanout to members of 20 channels each: C=1000 S=10 R=10 D=10 M=20 (the reference has no memberships)" \
  fanout "${flack_args[@]}" "${ref_args[@]}" "${BIG[@]}" "${MEMBERS[@]}"
step "connections: N=15000 idle sockets" \
  connections "${flack_args[@]}" "${ref_args[@]}" "${CONNS[@]}"
step "fanout at a low rate: C=100 S=20 R=10 D=5 (latency when nothing queues)" \
  fanout "${flack_args[@]}" "${ref_args[@]}" "${NAGLE[@]}"
stop_flack
fi

# Durable: the same search against Flack on a SQLite file (memory Flack and the reference
# are the max-rate step above, same case).
if want sqlite; then
start_flack sqlite "$work/flack.db" "${RAISED_LIMITS[@]}"
flack_args=(--flack "$FLACK" --flack-pid "$FLACK_PID" --flack-label flack-sqlite)
step "durable max-rate: C=100 S=20 on SQLite" \
  max-rate "${flack_args[@]}" "${MAXRATE[@]}"
stop_flack
fi

# The cluster: N nodes on one PostgreSQL and one Redis, every process on the servers' core.
if want cluster; then
  services_dir=$work/services
  # As root PostgreSQL runs as `postgres`, which must get through the work dir to its own.
  chmod a+x "$work"
  echo
  echo "== cluster: starting PostgreSQL and Redis (scripts/services.sh, ${pinning%%,*})"
  "${SERVER_CPU[@]}" scripts/services.sh start "$services_dir" --until-gone $$ >"$work/services.log" 2>&1 ||
    { cat "$work/services.log" >&2; exit 1; }
  # Read, not sourced into this shell: Flack refuses FLACK_* variables it does not know.
  # shellcheck disable=SC1091
  pg_url=$(source "$services_dir/services.env" && echo "$FLACK_TEST_POSTGRES_URL")
  # shellcheck disable=SC1091
  redis_url=$(source "$services_dir/services.env" && echo "$FLACK_TEST_REDIS_URL")
  pg_pid=$(head -n 1 "$services_dir/pg/postmaster.pid")
  redis_pid=$(cat "$services_dir/redis.pid")
  echo "PostgreSQL is pid $pg_pid (its backends are its children), Redis is pid $redis_pid"
  # Commits that wait long on the disk's flush are logged, and counted after each step.
  psql -q "$pg_url" -c "ALTER SYSTEM SET log_min_duration_statement = 30" \
    -c "SELECT pg_reload_conf()" >/dev/null
  slow_commits() { grep -c "statement: COMMIT" "$services_dir/postgres.log" || true; }
  # Between searches PostgreSQL finishes what the last one left it (autovacuum of its tables,
  # dirty buffers), at most 60 s, so that it does not run during the next one's first steps.
  settle_postgres() {
    local i busy
    psql -q "$pg_url" -c "CHECKPOINT" >/dev/null
    for i in $(seq 1 60); do
      busy=$(psql -qtA "$pg_url" -c "SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'autovacuum worker' OR (backend_type = 'client backend'
          AND state = 'active' AND pid != pg_backend_pid())")
      [[ $busy == 0 ]] && break
      sleep 1
    done
    echo "   (PostgreSQL settled after ${i} s)"
  }
  # Starts N nodes on a fresh database NAME (extra FLACK_KEY=value settings after it), labelled
  # LABEL in the reports; sets node_pids and cluster_args.
  start_nodes() { # n name label [FLACK_KEY=value...]
    local n=$1 name=$2 label=$3 k port
    shift 3
    settle_postgres
    psql -q "$pg_url" -c "CREATE DATABASE $name" >/dev/null
    node_pids=()
    local node_urls=()
    for ((k = 0; k < n; k++)); do
      port=$((CLUSTER_PORT + k))
      env LEPTOS_SITE_ROOT=target/site LEPTOS_OUTPUT_NAME=flack FLACK_ADDRESS=$HOST:$port \
        FLACK_DATABASE_URL="${pg_url%/*}/$name" FLACK_REDIS_URL="$redis_url" \
        FLACK_REDIS_PREFIX="bench-$$-$name" FLACK_LOG=warn "${RAISED_LIMITS[@]}" "$@" \
        "${SERVER_CPU[@]}" target/release/flack >>"$work/flack-$name-$k.log" 2>&1 &
      node_pids+=("$!")
      started_pids+=("$!")
      node_urls+=("http://$HOST:$port")
      wait_for "http://$HOST:$port/favicon.svg" "$!" ||
        { tail -n 20 "$work/flack-$name-$k.log" >&2; exit 1; }
    done
    echo "$n Flack node(s) on PostgreSQL + Redis${*:+ ($*)}: pids ${node_pids[*]} on ${node_urls[*]}"
    watched_pids=("${node_pids[@]}" "$pg_pid" "$redis_pid")
    cluster_args=(--flack "$(IFS=,; echo "${node_urls[*]}")" --flack-pid "$(IFS=,; echo "${node_pids[*]}")"
      --extra-pid "postgres=$pg_pid" --extra-pid "redis=$redis_pid" --flack-label "$label")
  }
  # The max-rate search on the nodes started, with the slow commits it met.
  cluster_max_rate() { # description
    local commits_before
    commits_before=$(slow_commits)
    step "cluster max-rate: C=100 S=20 over $1" max-rate "${cluster_args[@]}" "${MAXRATE[@]}"
    echo "   PostgreSQL commits over 30 ms during this search ($1): $(($(slow_commits) - commits_before))" |
      tee -a "$work/slow-commits.txt"
  }
  for n in "${CLUSTER_NODES[@]}"; do
    start_nodes "$n" "bench$n" "flack-pg-redis-$n"
    cluster_max_rate "$n node(s) on PostgreSQL + Redis"
    step "cluster fanout: C=1000 S=10 R=10 D=10 over $n node(s) on PostgreSQL + Redis" \
      fanout "${cluster_args[@]}" "${BIG[@]}"
    stop_all "${node_pids[@]}"
    settle_disk
  done
  # Like for like: commits that do not wait for the disk, as SQLite's default (informational;
  # the bar is the default above).
  start_nodes 1 bench1nosync flack-pg-redis-1-nosync FLACK_POSTGRES_FULL_SYNC=false
  cluster_max_rate "1 node on PostgreSQL + Redis, postgres_full_sync = false"
  stop_all "${node_pids[@]}"
  settle_disk
  watched_pids=()
  scripts/services.sh stop "$services_dir" >/dev/null 2>&1 || true
  services_dir=
  echo
  echo "== cluster bars (one node on PostgreSQL + Redis >= 0.5x one node on SQLite, max-rate C=100 S=20;"
  echo "   C=1000 S=10 R=10 over ${CLUSTER_NODES[-1]} nodes with zero loss); cpu is % of one core, the servers share core 0"
  "$LOAD" cluster-bars --sqlite flack-sqlite --one flack-pg-redis-1 --cluster "flack-pg-redis-${CLUSTER_NODES[-1]}" \
    "$results" | tee "$work/cluster-bars.txt"
  echo "   like for like, commits not waiting for the disk on either side (sqlite_full_sync = false,"
  echo "   postgres_full_sync = false; informational, not the bar):"
  "$LOAD" cluster-bars --sqlite flack-sqlite --one flack-pg-redis-1-nosync \
    --cluster "flack-pg-redis-${CLUSTER_NODES[-1]}" "$results" | grep max-rate | sed 's/^/   /' |
    tee -a "$work/cluster-bars.txt"
  echo "   one commit that waits long on the disk holds every post behind it (a step with one fails"
  echo "   p99 < 50 ms):"
  sed 's/^ */   /' "$work/slow-commits.txt"
fi

if want wasm; then
step "wasm-size" wasm-size --pkg target/site/pkg
fi

# Abuse: a fresh Flack on SQLite with its default limits; each attack from 127.0.0.2 while a
# normal user chats from 127.0.0.1. Flack dying here is a result, not a reason to stop.
if want abuse; then
start_flack sqlite "$work/abuse.db"
echo
echo "== abuse: each attack for a bounded time while a normal user chats (bars: RSS growth <= 64 MiB, p99 <= 3x quiet, a fresh browser served after)"
t0=$SECONDS
if "${LOAD_CPU[@]}" "$LOAD" abuse --flack "$FLACK" --flack-pid "$FLACK_PID" "${ABUSE[@]}" | tee -a "$results"; then
  echo "   (abuse: $((SECONDS - t0)) s)"
else
  echo "bench: step 'abuse' failed" >&2
  failures=$((failures + 1))
fi
if ! kill -0 "$FLACK_PID" 2>/dev/null; then
  echo "bench: Flack died during the abuse step; its log: $work/flack-sqlite.log" >&2
  tail -n 20 "$work/flack-sqlite.log" >&2 || true
  failures=$((failures + 1))
fi
stop_flack
fi

echo
echo "== plan finished in $((SECONDS - plan_start)) s; load now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Results"
echo
echo "Columns are targets; 'X vs ref' is the ratio to the reference (TCP_NODELAY, like Flack):"
echo "above 1.00x means X is better (throughput: X/ref; latency, memory, losses: ref/X)."
echo
"$LOAD" summary "$results"
if [[ -s $work/cluster-bars.txt ]]; then
  echo
  echo "Cluster bars:"
  echo
  cat "$work/cluster-bars.txt"
fi
if ((failures > 0)); then
  echo "bench: $failures step(s) failed" >&2
  exit 1
fi
