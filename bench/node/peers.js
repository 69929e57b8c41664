// Node peers for `make bench`, one process per replica: `node peers.js sio|ws PORT REDIS_URL CHANNEL`.
//   sio: socket.io 4 + @socket.io/redis-adapter 8, as teams deploy it (clients join room user:<user>).
//   ws:  a bare `ws` relay: one Redis subscriber, each message sent as-is to every open socket.
// Both: POST /fire {"room": user|null, "event": {...}} emits (sio) or PUBLISHes (ws); GET /readyz -> 200.
"use strict";
const http = require("http");
const { createClient } = require("redis");

const [kind, port, redisUrl, channel] = process.argv.slice(2);

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  let fire;
  const server = http.createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/fire") {
      res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ready"}');
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      await fire(JSON.parse(Buffer.concat(chunks)));
      res.writeHead(202, { "content-type": "application/json" }).end('{"ok":true}');
    });
  });
  if (kind === "sio") {
    const { Server } = require("socket.io");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const io = new Server(server, { transports: ["websocket"], adapter: createAdapter(pub, sub, { key: channel }) });
    io.on("connection", (socket) => socket.join(`user:${socket.handshake.query.user}`));
    fire = async (body) => (body.room ? io.to(`user:${body.room}`) : io).emit("event", body.event);
  } else if (kind === "ws") {
    const { WebSocketServer, WebSocket } = require("ws");
    const wss = new WebSocketServer({ server });
    await sub.subscribe(channel, (message) => {
      for (const client of wss.clients) if (client.readyState === WebSocket.OPEN) client.send(message);
    });
    fire = (body) => pub.publish(channel, JSON.stringify(body.event));
  } else {
    throw new Error(`kind must be sio or ws, not ${kind}`);
  }
  server.listen(Number(port), "127.0.0.1");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
