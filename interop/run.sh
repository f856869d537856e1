#!/usr/bin/env bash
# Sends numbered events through the built `sluice-hook`, as Claude Code runs it, to a plain
# Node socket.io server or a python-socketio server that is SIGKILLed and restarted every
# second meanwhile; then checks by identity that every event arrived, in order.
#
#   interop/run.sh node|python [EVENTS]      (default 3000 events)
#
# Needs `cargo build --release -p sluice-hook` and python3 (it counts); for `node`, node and
# npm (the script installs socket.io here); for `python`, python-socketio and aiohttp.
# Exit 0 only if every event arrived, first arrivals in order.
set -euo pipefail
kind=${1:?usage: interop/run.sh node|python [EVENTS]}
events=${2:-3000}
here=$(cd "$(dirname "$0")" && pwd)
hook=$here/../target/release/sluice-hook
[ -x "$hook" ] || { echo "build it first: cargo build --release -p sluice-hook" >&2; exit 1; }
case $kind in
  node)
    [ -d "$here/node_modules/socket.io" ] || (cd "$here" && npm install --silent --no-audit)
    server=(node "$here/server.js") ;;
  python)
    python3 -c 'import socketio, aiohttp' 2>/dev/null ||
      { echo "needs python-socketio and aiohttp (pip install python-socketio aiohttp)" >&2; exit 1; }
    server=(python3 "$here/server.py") ;;
  *) echo "usage: interop/run.sh node|python [EVENTS]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SLUICE_RUNTIME_DIR=$work/run SLUICE_STATE_DIR=$work/state HOME=$work
export SLUICE_URL=http://127.0.0.1:$port
received=$work/received.jsonl
cleanup() {
  "$hook" stop >/dev/null 2>&1 || true
  [ -n "${restarter:-}" ] && kill -9 "$restarter" 2>/dev/null || true
  pkill -9 -f "$here/server\.(js|py) $port\$" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The server: killed and restarted every second until every event was handed over, then
# left up for the relay to finish.
(
  while [ ! -e "$work/sent" ]; do
    "${server[@]}" "$port" >> "$received" 2>/dev/null &
    pid=$!
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 0.2
  done
  exec "${server[@]}" "$port" >> "$received" 2>/dev/null
) &
restarter=$!
disown

for n in $(seq 1 "$events"); do
  printf '{"session_id":"interop","cwd":"/tmp","transcript_path":"/tmp/t.jsonl","hook_event_name":"UserPromptSubmit","prompt":"event %d"}' "$n" |
    "$hook"
done
touch "$work/sent"
for _ in $(seq 240); do
  depth=$("$hook" stats --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["spool_depth"])')
  [ "$depth" = 0 ] && break
  sleep 0.5
done
"$hook" stats --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("relay: delivered %(delivered)s, replayed %(replayed)s, retries %(send_retries)s, left in the store %(spool_depth)s" % s)'

python3 - "$received" "$events" <<'PY'
import json, sys
from collections import Counter
path, events = sys.argv[1], int(sys.argv[2])
firsts, seen = [], Counter()
for line in open(path, errors="replace"):
    try:
        prompt = json.loads(line)["data"]["prompt"]
    except (ValueError, KeyError, TypeError):
        continue
    n = int(prompt.split()[1])
    if not seen[n]:
        firsts.append(n)
    seen[n] += 1
missing = [n for n in range(1, events + 1) if not seen[n]]
duplicated = sum(c - 1 for c in seen.values())
in_order = firsts == sorted(firsts)
print(f"server: {len(seen)} of {events} events arrived, {duplicated} duplicate arrivals, "
      f"first arrivals {'in order' if in_order else 'OUT OF ORDER'}")
if missing:
    print(f"LOST {len(missing)}: {missing[:20]}")
sys.exit(1 if missing or not in_order or len(seen) != events else 0)
PY
