#!/usr/bin/env python3
"""WebSocket interop with node's `ws` (Debian node-ws, found through
NODE_PATH=/usr/share/nodejs), both directions and compressed or not:
csock's client (test_ws_peer.c) against a node ws echo server, and a node
ws client against csock's server (test_ws_peer.c's echo). Text, binary,
fragmented and 16 MiB messages, pings both ways, the close codes of either
side's closing handshake and of a message over max_message. Skips, saying
so, when node or its ws module is missing."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csocktest as ct  # noqa: E402
from test_ws_interop import peer, start_server, stop_server, wait_line  # noqa: E402

NODE_PATH = os.environ.get("NODE_PATH", "/usr/share/nodejs")

# permessage-deflate settings by name, for either node side.
NODE_PMD = """
const PMD = {
  plain: false,
  deflate: {threshold: 0},
  limits: {threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true,
           serverMaxWindowBits: 10, clientMaxWindowBits: 9},
  close: {threshold: 0},
};
"""

SERVER_JS = NODE_PMD + r"""
const WebSocket = require('ws');
const mode = process.argv[2];
const wss = new WebSocket.Server({host: '127.0.0.1', port: 0, perMessageDeflate: PMD[mode],
                                  maxPayload: 64 << 20});
wss.on('listening', () => console.log('listening ' + wss.address().port));
wss.on('connection', (ws) => {
  console.log('connection ext=' + ws.extensions);
  ws.on('message', (data, isBinary) => {
    if (mode === 'close') ws.close(4003, 'server says no');
    else ws.send(data, {binary: isBinary});
  });
  ws.on('close', (code, reason) => { console.log('close ' + code + ' ' + reason); process.exit(0); });
});
"""

CLIENT_JS = NODE_PMD + r"""
const WebSocket = require('ws');
const [url, mode, script] = process.argv.slice(2);
const ws = new WebSocket(url, {perMessageDeflate: PMD[mode], maxPayload: 64 << 20});
const log = (s) => console.log(s);
const big = Buffer.alloc(16 << 20);
for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 255;
const bin = Buffer.from([...Array(256).keys()]);
const mb = 'h\u00e9llo \u20ac \ud834\udd1e';
let failed = false, pong = false;
const want = [];
function expect(what, data, isBinary) {
  const [name, body, binary] = want.shift();
  const ok = isBinary === binary && Buffer.compare(Buffer.from(data), Buffer.from(body)) === 0;
  log((ok ? 'ok ' : 'bad ') + name + (ok ? '' : ' (' + data.length + ' bytes)'));
  if (!ok) failed = true;
  return name;
}
ws.on('open', () => {
  log('open ext=' + ws.extensions);
  if (script === 'too-big') {            // zeros: tiny compressed, over the server's max
    want.push(['never', '', true]);
    ws.send(Buffer.alloc(100000));
    return;
  }
  if (script === 'server-closes') {
    ws.send('!close 4001 bye now');
    return;
  }
  ws.send('hello');                                  want.push(['text', 'hello', false]);
  ws.send(bin);                                      want.push(['binary', bin, true]);
  ws.send('frag', {fin: false});
  ws.ping('p1');                                     // between the fragments
  ws.send('ment', {fin: false});
  ws.send('ed', {fin: true});                        want.push(['fragmented', 'fragmented', false]);
  ws.send(big);                                      want.push(['16MiB', big, true]);
  ws.send(mb);                                       want.push(['utf8', mb, false]);
  ws.send('!ping');                                  // the server pings us: ws answers
  ws.send('after');                                  want.push(['after', 'after', false]);
});
ws.on('pong', (d) => { pong = d.toString() === 'p1'; });
ws.on('message', (data, isBinary) => {
  if (expect('', data, isBinary) === 'after') {
    log((pong ? 'ok' : 'bad') + ' pong');
    if (!pong) failed = true;
    ws.close(4002, 'node done');
  }
});
ws.on('close', (code, reason) => {
  log('close ' + code + ' ' + reason);
  process.exit(failed ? 1 : 0);
});
ws.on('error', (e) => log('error ' + e.message));
"""


def node():
    """The node binary with ws reachable; skips the test when missing."""
    exe = shutil.which("node") or shutil.which("nodejs")
    if not exe:
        raise ct.Skipped("node not installed")
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    res = subprocess.run([exe, "-e", "require('ws')"], env=env, capture_output=True, timeout=ct.T(30))
    if res.returncode != 0:
        raise ct.Skipped("node's ws module not installed (Debian node-ws)")
    return exe, env


def script(name, text):
    path = os.path.join(ct.tmpdir(), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def node_server(mode):
    exe, env = node()
    p = ct.Proc(["env", "NODE_PATH=" + env["NODE_PATH"], exe, script("server.js", SERVER_JS), mode])
    line = p.read_line(ct.T(30))
    ct.check(line.startswith("listening "), "node server said %r, stderr %r" % (line, p.stderr()))
    return p, int(line.split()[1])


def node_client(url, mode, what=""):
    exe, env = node()
    res = subprocess.run([exe, script("client.js", CLIENT_JS), url, mode, what], env=env,
                         capture_output=True, text=True, timeout=ct.T(120))
    return res.returncode, res.stdout, res.stderr


def c_client(port, flags):
    res = subprocess.run([peer(), *flags, "client", "ws://127.0.0.1:%d/chat" % port],
                         capture_output=True, text=True, timeout=ct.T(120))
    ct.check_clean(res.stderr, "test_ws_peer client")
    return res.returncode, res.stdout


# ---- csock's client, node's server ---------------------------------------------------


def test_c_client_node_server():
    for mode, flags, compressed in [("plain", [], 0), ("deflate", ["--deflate"], 1),
                                    ("limits", ["--deflate"], 1), ("deflate", [], 0),
                                    ("plain", ["--deflate"], 0),
                                    ("deflate", ["--deflate=snct,cnct,sbits=9,cbits=10,min=1"], 1)]:
        node()
        p, port = node_server(mode)
        try:
            rc, out = c_client(port, flags)
            ct.check("open compressed=%d\n" % compressed in out, "%s %s: %r" % (mode, flags, out))
            for what in ("text", "binary", "fragmented", "16MiB", "utf8", "pong"):
                ct.check("ok %s\n" % what in out, "%s %s: no 'ok %s' in %r" % (mode, flags, what, out))
            ct.check("closed code=1000 sent=1000 status=0 reason=bye" in out, out)
            ct.check_eq(rc, 0, "client exit status")
            ext = wait_line(p, "connection")
            ct.check_eq("permessage-deflate" in ext, bool(compressed), "node's side: " + ext)
            ct.check_eq(wait_line(p, "close"), "close 1000 bye", "node's end")
        finally:
            p.stop()


def test_node_server_closes_c_client():
    for mode, flags in [("close", []), ("close", ["--deflate"])]:
        node()
        p, port = node_server(mode)
        try:
            rc, out = c_client(port, flags)
            ct.check("closed code=4003 sent=4003 status=0 reason=server says no" in out, out)
            ct.check(rc != 0, "the client's script cannot have finished")
        finally:
            p.stop()


# ---- node's client, csock's server ---------------------------------------------------


def test_node_client_c_server():
    for mode, flags, compressed in [("plain", [], 0), ("deflate", ["--deflate"], 1),
                                    ("limits", ["--deflate"], 1), ("deflate", [], 0),
                                    ("deflate", ["--deflate=snct,cnct,sbits=11,cbits=12,level=1,min=1"], 1)]:
        node()
        p, hp = start_server(flags=flags)
        try:
            rc, out, err = node_client("ws://%s/" % hp, mode)
            ct.check(("open ext=%s\n" % ("permessage-deflate" if compressed else "")) in out,
                     "%s %s: %r %r" % (mode, flags, out, err))
            for what in ("text", "binary", "fragmented", "16MiB", "utf8", "after", "pong"):
                ct.check("ok %s\n" % what in out, "%s %s: no 'ok %s' in %r %r" % (mode, flags, what, out, err))
            ct.check("close 4002 \n" in out, out)  # the server echoes the code, not the reason
            ct.check_eq(rc, 0, "node client exit status: %s" % err)
            ct.check_eq(wait_line(p, "accepted"), "accepted compressed=%d" % compressed, "the server's view")
            wait_line(p, "pong srv")
            ct.check_eq(wait_line(p, "closed"), "closed code=4002 sent=4002 status=0 reason=node done",
                        "the server's end")
        finally:
            stop_server(p)


def test_c_server_closes_node_client():
    for mode, flags in [("plain", []), ("deflate", ["--deflate"])]:
        node()
        p, hp = start_server(flags=flags)
        try:
            rc, out, err = node_client("ws://%s/" % hp, mode, "server-closes")
            ct.check("close 4001 bye now\n" in out, "%r %r" % (out, err))
            ct.check_eq(wait_line(p, "closed"), "closed code=4001 sent=4001 status=0 reason=bye now",
                        "the server's end")
        finally:
            stop_server(p)


def test_node_client_too_big():
    """100 kB of zeros against max_message 65536: compressed it is a few
    hundred bytes, inflated it is over: 1009 either way."""
    for mode, flags in [("plain", []), ("deflate", ["--deflate"])]:
        node()
        p, hp = start_server("65536", flags=flags)
        try:
            rc, out, err = node_client("ws://%s/" % hp, mode, "too-big")
            ct.check("close 1009 \n" in out, "%s: %r %r" % (mode, out, err))
            ct.check_eq(wait_line(p, "closed"), "closed code=1006 sent=1009 status=ETOOBIG reason=",
                        "the server's end")
        finally:
            stop_server(p)


if __name__ == "__main__":
    ct.main()
