// A plain socket.io 4 server that acts as a dashboard: it logs each `claude_event` as one
// JSON line on stdout, with its arrival time (`arrived_ms`, milliseconds since the epoch,
// microsecond precision), re-broadcasts it, and acks it when asked.
//
//   node server.js PORT [noack] [noecho]
//
// `noack` ignores the ack callback, as a handler written without one does; `noecho` does not
// re-broadcast, so the server writes nothing back but acks (interop/latency.py).
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8765);
const flags = new Set(process.argv.slice(3));
const acks = !flags.has("noack");
const echo = !flags.has("noecho");
const io = new Server(port, { maxHttpBufferSize: 1e6 });
io.on("connection", (socket) => {
  socket.on("claude_event", (data, ack) => {
    const arrived_ms = performance.timeOrigin + performance.now();
    console.log(JSON.stringify({ arrived_ms, ...data }));
    if (echo) io.emit("claude_event", data);
    if (acks && typeof ack === "function") ack();
  });
});
