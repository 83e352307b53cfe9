#!/usr/bin/env bash
# Installs what is missing, then runs every check: formatting, clippy on both feature sets,
# the Rust tests (protocol, store contract, hub, WebSocket against the real router), and the
# Playwright journeys in Debian's chromium against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$SECONDS

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
export FLACK_ADDRESS=${FLACK_E2E_ADDRESS:-127.0.0.1:3210}
export E2E_BASE_URL="http://$FLACK_ADDRESS"
# A real SQLite file, fresh for each run.
e2e_dir=$(mktemp -d)
trap 'rm -rf "$e2e_dir"' EXIT
export FLACK_DATABASE="$e2e_dir/flack.db"
# Every journey is a new browser on 127.0.0.1: lift the per-address budgets for new
# identities and channels out of the way (tests/abuse.rs tests them).
export FLACK_NEW_IDENTITIES_BURST=100000 FLACK_NEW_CHANNELS_BURST=100000
cargo leptos end-to-end --release

step "all checks passed in $((SECONDS - start)) s"
