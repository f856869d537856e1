"""A python-socketio (aiohttp) server that acts as a dashboard, as claude-mpm's does: it logs
each `claude_event` as one JSON line on stdout, re-broadcasts it, and acks it (python-socketio
acks when the handler returns)."""
import json
import sys

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp")
app = web.Application()
sio.attach(app)


@sio.on("claude_event")
async def claude_event(sid, data):
    print(json.dumps(data), flush=True)
    await sio.emit("claude_event", data)


web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
