#!/usr/bin/env bash
# Installs what is missing, then builds and serves a release build of Flack on
# http://127.0.0.1:3000 (see Leptos.toml; FLACK_ADDRESS overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/env.sh
exec cargo leptos serve --release
