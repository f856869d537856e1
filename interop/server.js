// A plain socket.io 4 server that acts as a dashboard: it logs each `claude_event` as one
// JSON line on stdout, re-broadcasts it, and acks it when asked (run with `noack` to ignore
// the ack callback, as a handler written without one does).
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 8765);
const acks = process.argv[3] !== "noack";
const io = new Server(port, { maxHttpBufferSize: 1e6 });
io.on("connection", (socket) => {
  socket.on("claude_event", (data, ack) => {
    console.log(JSON.stringify(data));
    io.emit("claude_event", data);
    if (acks && typeof ack === "function") ack();
  });
});
