#!/usr/bin/env python3
"""Memory of `sluice-hook dashboard` under a long stream of events.

    python3 interop/dashboard_memory.py [--bin PATH] [--events N]

Starts `sluice-demo dashboard` (what `sluice-hook dashboard` runs; default
target/release/sluice-demo, built by `cargo build --release -p sluice-demo`) on a free
loopback port, sends it N `claude_event`s (default 200,000), each with its own `event_id`
and a 1 KB prompt, through one python-socketio client with acks (500 in flight), and prints
the dashboard's resident memory every 50,000 events. Needs python-socketio and aiohttp.
"""
import argparse
import asyncio
import os
import socket
import subprocess
import time

import socketio

HERE = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "sluice-demo"))
parser.add_argument("--events", type=int, default=200_000)
args = parser.parse_args()
BIN, N = args.bin, args.events
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]
port = free_port()
proc = subprocess.Popen([BIN, "dashboard", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) // 1024
async def main():
    sio = socketio.AsyncClient()
    for _ in range(100):
        try:
            await sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"]); break
        except Exception:
            await asyncio.sleep(0.1)
    prompt = "x" * 1000
    print(f"start: {rss()} MiB", flush=True)
    window = []
    for n in range(N):
        ev = {"type": "hook", "subtype": "user_prompt", "timestamp": "2026-12-07T00:00:00Z",
              "data": {"event_id": f"ev-{n:08d}", "session_id": "s1", "prompt": prompt}}
        fut = asyncio.get_running_loop().create_future()
        await sio.emit("claude_event", ev, callback=lambda *a, f=fut: f.done() or f.set_result(True))
        window.append(fut)
        if len(window) >= 500:
            await asyncio.gather(*window); window = []
        if (n + 1) % 50000 == 0:
            await asyncio.gather(*window); window = []
            print(f"after {n+1}: {rss()} MiB", flush=True)
    await asyncio.gather(*window)
    await sio.disconnect()
try:
    t = time.time(); asyncio.run(main()); print(f"{N} events in {time.time()-t:.1f} s; RSS {rss()} MiB")
finally:
    proc.terminate(); proc.wait()
