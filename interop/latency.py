#!/usr/bin/env python3
"""Hook start to arrival at a plain Socket.IO server, as users run sluice.

    python3 interop/latency.py [--servers node,python] [--hook PATH] [--events N]
                               [--back-to-back N] [--idle N] [--against PATH]

For each server (interop/server.js: Node socket.io 4; interop/server.py: python-socketio),
started with `noecho` so that it acks each event and writes nothing else back, the built
`sluice-hook` is run as Claude Code runs it: one process per event, the event on stdin, each
waited for. Three runs per server:

- stream: a hook starts every 2 to 5 ms (uniformly drawn; at once if the previous one took
  longer), `--events` of them (default 500);
- back to back: each hook starts as soon as the previous one exited, `--back-to-back` of
  them (default 200);
- idle: `--idle` events (default 100), each started 100 ms after the previous one arrived.
  With `--against PATH` (another build's `sluice-hook`, say the previous one kept aside),
  that build runs too, with a relay and a server of its own, and the two take turns event
  by event; a last row gives the median of the differences between turns.

Each event carries its number; the server stamps its arrival (CLOCK_REALTIME, milliseconds
with microsecond precision) and this driver its hook's start on the same clock, so the
latency of event n is its arrival minus its start, matched by number. Every event must
arrive exactly once, in order, or the run fails. Before timing, 20 events warm the relay and
its connection up (the first hook starts the relay). Prints p50, p90, p99 and the maximum,
after two floors: `cat` run the same way, back to back and 100 ms apart, the cost of any
process here.

Needs `cargo build --release -p sluice-hook`; node and npm for `node` (socket.io is
installed here), python-socketio and aiohttp for `python`. Exit 0 only if every event of
every run arrived once, in order.
"""
import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WARM_UP = 20
IDLE_GAP_S = 0.1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(kind, port):
    if kind == "node":
        if not os.path.isdir(os.path.join(HERE, "node_modules", "socket.io")):
            subprocess.run(["npm", "install", "--silent", "--no-audit"], cwd=HERE, check=True)
        return ["node", os.path.join(HERE, "server.js"), str(port), "noecho"]
    if kind == "python":
        try:
            import aiohttp  # noqa: F401
            import socketio  # noqa: F401
        except ImportError:
            sys.exit("needs python-socketio and aiohttp (pip install python-socketio aiohttp)")
        return [sys.executable, os.path.join(HERE, "server.py"), str(port), "noecho"]
    sys.exit(f"unknown server {kind!r}: node or python")


def event(n):
    return json.dumps({
        "session_id": "latency", "cwd": "/tmp", "transcript_path": "/tmp/t.jsonl",
        "hook_event_name": "UserPromptSubmit", "prompt": f"latency {n}",
    }).encode()


class Arrivals:
    """The server's log, read as it grows: event number -> arrival times (ms)."""

    def __init__(self, path):
        self.path, self.offset, self.times = path, 0, {}

    def read(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
                n = int(record["data"]["prompt"].split()[1])
            except (ValueError, KeyError, TypeError, IndexError):
                continue
            self.times.setdefault(n, []).append(record["arrived_ms"])
        return self.times

    def wait_for(self, n, timeout_s):
        deadline = time.monotonic() + timeout_s
        while n not in self.read():
            if time.monotonic() > deadline:
                raise SystemExit(f"event {n} did not arrive within {timeout_s} s")
            time.sleep(0.0005)


def run_hook(hook, env, n):
    """Runs one hook for event `n`; returns its start (epoch ms)."""
    start = time.time() * 1000
    done = subprocess.run([hook], input=event(n), env=env, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"hook exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return start


def floor(runs=200, gap_s=0.0):
    """Wall time of `cat` run as the hook is (the event on stdin, output read): the cost of a
    process on this machine, part of every figure above it. With `gap_s`, each run starts
    that long after the previous one ended, as in the idle run: a process started on an idle
    machine takes longer (on this VM about twice as long)."""
    times = []
    for n in range(runs):
        if gap_s:
            time.sleep(gap_s)
        start = time.time() * 1000
        subprocess.run(["cat"], input=event(n), capture_output=True, check=True)
        times.append(time.time() * 1000 - start)
    times.sort()
    how = f"{gap_s * 1000:.0f} ms apart" if gap_s else "back to back"
    print(f"| floor | `cat` run as the hook is, start to exit, {how} | {runs} | {percentile(times, 50):.2f} ms | "
          f"{percentile(times, 90):.2f} ms | {percentile(times, 99):.2f} ms | {times[-1]:.2f} ms | |")


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


def report(kind, mode, starts, arrivals):
    times = arrivals.read()
    numbers = sorted(starts)
    missing = [n for n in numbers if n not in times]
    duplicates = sum(len(times[n]) - 1 for n in numbers if n in times)
    firsts = sorted(numbers, key=lambda n: times[n][0]) if not missing else []
    if missing or duplicates or firsts != numbers:
        print(f"{kind} {mode}: FAILED: missing {missing[:10]}, {duplicates} duplicates, "
              f"in order: {firsts == numbers}")
        return False
    latencies = sorted(times[n][0] - starts[n] for n in numbers)
    print(f"| {kind} | {mode} | {len(latencies)} | {percentile(latencies, 50):.2f} ms | "
          f"{percentile(latencies, 90):.2f} ms | {percentile(latencies, 99):.2f} ms | "
          f"{latencies[-1]:.2f} ms | (mean {statistics.fmean(latencies):.2f} ms)")
    return True


class Relayed:
    """One build under test: its own server of `kind`, relay, store and arrival log."""

    def __init__(self, kind, hook):
        self.kind, self.hook = kind, hook
        self.work = tempfile.mkdtemp(prefix="sluice-latency-")
        port = free_port()
        self.env = dict(os.environ, SLUICE_RUNTIME_DIR=f"{self.work}/run",
                        SLUICE_STATE_DIR=f"{self.work}/state", HOME=self.work,
                        SLUICE_URL=f"http://127.0.0.1:{port}")
        self.env.pop("SLUICE_LOG", None)
        log_path = f"{self.work}/received.jsonl"
        self.log = open(log_path, "wb")
        self.server = subprocess.Popen(server_command(kind, port), stdout=self.log,
                                       stderr=subprocess.DEVNULL)
        self.arrivals = Arrivals(log_path)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    self.close()
                    raise SystemExit(f"the {kind} server did not start on port {port}")
                time.sleep(0.05)

    def run(self, n):
        return run_hook(self.hook, self.env, n)

    def close(self):
        subprocess.run([self.hook, "stop"], env=self.env, capture_output=True)
        self.server.kill()
        self.server.wait()
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)


def measure(kind, hook, events, back_to_back, idle, against=None):
    builds = []
    ok = True
    try:
        for path in [hook] + ([against] if against else []):
            builds.append(Relayed(kind, path))
        this = builds[0]
        n = 0
        for build in builds:
            for _ in range(WARM_UP):
                build.run(n)
                build.arrivals.wait_for(n, 10)
                n += 1

        starts = {}
        for _ in range(events):
            starts[n] = this.run(n)
            next_start = starts[n] + random.uniform(2, 5)
            n += 1
            pause = (next_start - time.time() * 1000) / 1000
            if pause > 0:
                time.sleep(pause)
        if starts:
            this.arrivals.wait_for(n - 1, 30)
            ok &= report(kind, "stream, one every 2-5 ms", starts, this.arrivals)

        starts = {}
        for _ in range(back_to_back):
            starts[n] = this.run(n)
            n += 1
        if starts:
            this.arrivals.wait_for(n - 1, 30)
            ok &= report(kind, "back to back", starts, this.arrivals)

        # With --against, the builds take turns event by event (in a random order each
        # round), so that both meet the same load: this machine's speed drifts by a third
        # within minutes.
        idle_starts = [{} for _ in builds]
        for _ in range(idle):
            for i in random.sample(range(len(builds)), len(builds)):
                time.sleep(IDLE_GAP_S)
                idle_starts[i][n] = builds[i].run(n)
                builds[i].arrivals.wait_for(n, 10)
                n += 1
        mode = f"idle, {IDLE_GAP_S * 1000:.0f} ms apart"
        for build, starts in zip(builds, idle_starts):
            if starts:
                label = f"{mode} ({build.hook})" if against else mode
                ok &= report(kind, label, starts, build.arrivals)
        if against and idle and ok:
            def latencies(build, starts):
                times = build.arrivals.read()
                return [times[k][0] - starts[k] for k in sorted(starts)]
            ours, theirs = (latencies(b, s) for b, s in zip(builds, idle_starts))
            change = statistics.median(a - b for a, b in zip(ours, theirs))
            print(f"| {kind} | {mode}: this build minus the other, paired by turn | {idle} | "
                  f"{change:+.3f} ms (median) | | | | |")
    finally:
        for build in builds:
            build.close()
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="node,python")
    parser.add_argument("--hook", default=os.path.join(HERE, "..", "target", "release", "sluice-hook"))
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--back-to-back", type=int, default=200)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--against", metavar="PATH",
                        help="another build's sluice-hook, timed in turn with this one in the idle run")
    args = parser.parse_args()
    for hook in filter(None, [args.hook, args.against]):
        if not os.access(hook, os.X_OK):
            sys.exit(f"{hook}: build it first: cargo build --release -p sluice-hook")
    print(f"hook start to arrival at the server ({args.hook}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    print("| server | run | events | p50 | p90 | p99 | max | |\n|---|---|---|---|---|---|---|---|")
    floor()
    floor(100, IDLE_GAP_S)
    ok = True
    for kind in args.servers.split(","):
        ok &= measure(kind, args.hook, args.events, args.back_to_back, args.idle, args.against)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
