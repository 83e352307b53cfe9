# Sourced by the scripts: puts the tools setup.sh installed on PATH.
# wasm-opt comes from the binaryen npm package in end2end/ (Debian's is too old).
FLACK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$FLACK_ROOT/end2end/node_modules/.bin:$PATH"

# Where the scripts look for free loopback ports (PORT_RANGE, unless set): below the kernel's
# range for outgoing connections, so that a client socket never holds the port a server is
# about to bind (Redis once failed to start on a port a test's connection had taken).
if [ -z "${PORT_RANGE:-}" ]; then
  ephemeral_start=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0)
  if [ "${ephemeral_start:-0}" -gt 21000 ]; then
    PORT_RANGE=20000-$((ephemeral_start - 1))
  else
    PORT_RANGE=20000-49999
  fi
  export PORT_RANGE
fi
