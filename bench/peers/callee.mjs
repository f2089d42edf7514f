// The serving side of `make bench-peers`, one process per system:
//
//   node --experimental-websocket callee.mjs wspr  ws://127.0.0.1:PORT/ws   serves bench/adder through wsprd
//   node --experimental-websocket callee.mjs wamp  ws://127.0.0.1:PORT/ws   registers bench.add with a WAMP router
//   node callee.mjs echo                                                    a websocket echo server (the `ws` package)
//
// Prints one line `ready ...` once it serves, then serves until its stdin
// closes (its parent is gone) or it gets SIGTERM.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [system, url] = process.argv.slice(2);

function fail(msg) {
  console.error(`callee ${system}: ${msg}`);
  process.exit(1);
}

// PEERS_TRACE=FILE (bench/peers/tail.mjs): this process's garbage
// collections, [start ms of the monotonic clock (process.hrtime), duration ms, kind] per line,
// appended to FILE as they happen.
if (process.env.PEERS_TRACE) {
  const fs = await import('node:fs');
  const { PerformanceObserver } = await import('node:perf_hooks');
  const originMono = Number(process.hrtime.bigint()) / 1e6 - performance.now();
  const fd = fs.openSync(process.env.PEERS_TRACE, 'a');
  new PerformanceObserver((list) => {
    const lines = list.getEntries().map((e) => JSON.stringify([originMono + e.startTime, e.duration, e.detail?.kind ?? 0]));
    fs.writeSync(fd, `${lines.join('\n')}\n`);
  }).observe({ entryTypes: ['gc'] });
}
process.stdin.on('end', () => process.exit(0));
// A clean exit (a --cpu-prof profile gets written).
process.on('SIGTERM', () => process.exit(0));
process.stdin.resume();

if (system === 'wspr') {
  const { connect } = await import('../../js/wspr.js');
  // PEERS_WS=ws: the `ws` package's client instead of Node's global
  // WebSocket (undici), to tell the library's costs from the client's.
  const rt = await connect(url, process.env.PEERS_WS === 'ws' ? { WebSocket: require('ws') } : undefined);
  rt.closed.then((reason) => fail(`the pipe closed: ${reason.message}`));
  const server = await rt.serve('bench/adder', {
    add(ctx, a, b) {
      return a + b;
    },
  });
  console.log(`ready ${server.endpoint}`);
} else if (system === 'wamp') {
  const autobahn = require('autobahn');
  const connection = new autobahn.Connection({
    url,
    realm: 'realm1',
    serializers: [new autobahn.serializer.JSONSerializer()],
    max_retries: 0,
    retry_if_unreachable: false,
  });
  connection.onopen = async (session) => {
    try {
      await session.register('bench.add', ([a, b]) => a + b);
      console.log(`ready session ${session.id}`);
    } catch (e) {
      fail(`register failed: ${e?.error ?? e}`);
    }
  };
  connection.onclose = (reason, details) => {
    fail(`the WAMP connection closed: ${reason} ${JSON.stringify(details)}`);
  };
  connection.open();
} else if (system === 'echo') {
  const { WebSocketServer } = require('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (ws, req) => {
    req.socket.setNoDelay(true);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  wss.on('listening', () => console.log(`ready ws://127.0.0.1:${wss.address().port}/`));
  wss.on('error', (e) => fail(e.message));
} else {
  fail('usage: callee.mjs wspr|wamp URL, or callee.mjs echo');
}
