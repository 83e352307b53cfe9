# Sourced by the scripts: puts the tools setup.sh installed on PATH.
# wasm-opt comes from the binaryen npm package in end2end/ (Debian's is too old).
FLACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$FLACK_ROOT/end2end/node_modules/.bin:$PATH"
