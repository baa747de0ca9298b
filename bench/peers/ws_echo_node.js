// ws_echo_node.js [PORT]: a WebSocket echo server on node's `ws` (Debian
// node-ws; run with NODE_PATH=/usr/share/nodejs), the way its README echoes:
// every message sent back with the type it came with, no permessage-deflate
// (ws enables it on the server only when asked; said here explicitly).
// Listens on 127.0.0.1:PORT (0, the default: any free port) and prints
// "listening tcp://127.0.0.1:PORT".
'use strict';
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.argv[2] || 0),
  perMessageDeflate: false,
});
wss.on('listening', () => {
  process.stdout.write(`listening tcp://127.0.0.1:${wss.address().port}\n`);
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.on('SIGTERM', () => process.exit(0));
