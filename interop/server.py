"""A python-socketio (aiohttp) server that acts as a dashboard, as claude-mpm's does: it logs
each `claude_event` as one JSON line on stdout, with its arrival time (`arrived_ms`,
milliseconds since the epoch, microsecond precision), re-broadcasts it, and acks it
(python-socketio acks when the handler returns).

    python3 server.py PORT [noecho]

`noecho` does not re-broadcast, so the server writes nothing back but acks
(interop/latency.py)."""
import json
import sys
import time

import socketio
from aiohttp import web

echo = "noecho" not in sys.argv[2:]
sio = socketio.AsyncServer(async_mode="aiohttp")
app = web.Application()
sio.attach(app)


@sio.on("claude_event")
async def claude_event(sid, data):
    arrived_ms = time.time() * 1000
    print(json.dumps({"arrived_ms": arrived_ms, **data}), flush=True)
    if echo:
        await sio.emit("claude_event", data)


web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
