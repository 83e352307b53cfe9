#!/usr/bin/env bash
# Installs what is missing, then runs every check: formatting, clippy on both feature sets,
# the Rust tests (protocol, store contract, hub, WebSocket against the real router), and the
# Playwright journeys in Debian's chromium against a release build: once on one node, once
# behind nginx on three nodes sharing PostgreSQL and Redis.
#
# E2E_CLUSTER=0 skips the journeys behind nginx (a quicker local run; CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$SECONDS

# Where the single-node journeys' server listens. FLACK_E2E_ADDRESS is this script's setting,
# not the server's: taken out of the environment before anything runs, since the server (and
# the configuration tests) refuse FLACK_* keys they do not know.
e2e_address=${FLACK_E2E_ADDRESS:-127.0.0.1:3210}
unset FLACK_E2E_ADDRESS

# Scratch space, and whatever is still running from it, goes when this script ends.
scratch=$(mktemp -d)
chmod 755 "$scratch"
cleanup() {
  if [ -f "$scratch/cluster/cluster.env" ]; then ./scripts/cluster.sh stop "$scratch/cluster" >/dev/null 2>&1 || true; fi
  ./scripts/services.sh stop "$scratch/services" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

step "PostgreSQL and Redis for the tests"
# Once for every test (each makes a database and a key prefix of its own); stopped at exit,
# or by the watcher should this script die without its trap.
./scripts/services.sh start "$scratch/services" --until-gone $$
source "$scratch/services/services.env"
echo "PostgreSQL: $FLACK_TEST_POSTGRES_URL  Redis: $FLACK_TEST_REDIS_URL"

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (ssr, with the load generator)"
cargo clippy --features load --all-targets -- -D warnings

step "clippy (hydrate, wasm32)"
cargo clippy --lib --features hydrate --target wasm32-unknown-unknown -- -D warnings

step "cargo test (server, protocol, stores, crash, property and load smoke tests)"
cargo test --features load

step "Playwright journeys (release build)"
# A port of its own, so a running dev server does not get in the way.
export FLACK_ADDRESS=$e2e_address
export E2E_BASE_URL="http://$FLACK_ADDRESS"
# A real SQLite file, fresh for each run.
mkdir -p "$scratch/e2e"
export FLACK_DATABASE="$scratch/e2e/flack.db"
# Every journey is a new browser on 127.0.0.1: lift the per-address budgets for new
# identities and channels out of the way (tests/abuse.rs tests them).
export FLACK_NEW_IDENTITIES_BURST=100000 FLACK_NEW_CHANNELS_BURST=100000
cargo leptos end-to-end --release

step "Playwright journeys behind nginx, three nodes on PostgreSQL + Redis"
cluster=${E2E_CLUSTER:-1}
if [ "$cluster" = 0 ]; then
  printf '\033[1;33m%s\033[0m\n' "SKIPPED (E2E_CLUSTER=0): the journeys behind nginx"
fi
if [ "$cluster" = 1 ]; then
  # The nodes get their addresses and store from cluster.sh, not the single node's.
  unset FLACK_ADDRESS FLACK_DATABASE
  # The same lifted budgets as above (FLACK_NEW_*_BURST) reach every node.
  ./scripts/cluster.sh start "$scratch/cluster" --until-gone $$
  source "$scratch/cluster/cluster.env"
  # The servers run already: Playwright alone, pointed at nginx.
  (cd end2end && E2E_BASE_URL="$CLUSTER_URL" npx playwright test)
  ./scripts/cluster.sh stop "$scratch/cluster"
fi

step "all checks passed in $((SECONDS - start)) s"
