// The benchmark's load generator over HTTP/2 on Node's http2 module
// (nghttp2, in C): WebSockets opened with RFC 8441's extended CONNECT,
// small text echoes ping-pong on each, every echo compared with what was
// sent. Fast enough to keep the server busy, as picows is for HTTP/1.1
// (bench/load.py); bench/load_h2.py (the h2 library) is the fallback where
// Node is missing. The result is one JSON object on standard output.
//   node bench/load_h2.js ws://127.0.0.1:8181/socket --scenario S9 --seconds 5
// Scenarios (see bench/run.py):
//   S9   64 h2 connections, one WebSocket each, ping-pong, 32-byte text
//   S9m  8 h2 connections, 8 WebSockets each, ping-pong, 32-byte text
"use strict";
const http2 = require("http2");

const SCENARIOS = { S9: [64, 1], S9m: [8, 8] };
const PAYLOAD = Buffer.from("Hello, world! The quick brown fox").subarray(0, 32);

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : fallback;
}

const url = new URL(process.argv[2].replace(/^ws/, "http"));
const scenario = option("--scenario", "S9");
const seconds = Number(option("--seconds", "5"));
const [connections, perConnection] = SCENARIOS[scenario];

// A final masked text frame (RFC 6455 5.3: clients mask, over h2 too), and
// the unmasked echo expected back.
const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
const masked = Buffer.alloc(PAYLOAD.length);
for (let i = 0; i < PAYLOAD.length; i++) masked[i] = PAYLOAD[i] ^ MASK[i & 3];
const FRAME = Buffer.concat([Buffer.from([0x81, 0x80 | PAYLOAD.length]), MASK, masked]);
const EXPECTED = Buffer.concat([Buffer.from([0x81, PAYLOAD.length]), PAYLOAD]);
const CLOSE = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);

const stats = { messages: 0, mismatches: 0, errors: [], latencies: [] };
let until = Infinity;

function fail(why) {
  if (stats.errors.length < 5) stats.errors.push(why);
}

function open(session) {
  // One WebSocket: resolves with its stream once answered 200.
  return new Promise((resolve) => {
    const stream = session.request(
      {
        ":method": "CONNECT",
        ":protocol": "websocket",
        ":scheme": "http",
        ":path": url.pathname,
        ":authority": url.host,
        "sec-websocket-version": "13",
      },
      { endStream: false },
    );
    stream.on("error", (error) => fail("stream " + error.message));
    stream.on("response", (headers) => {
      if (headers[":status"] !== 200) fail("status " + headers[":status"]);
      resolve(stream);
    });
  });
}

function run(stream) {
  // Ping-pong until the deadline, then close 1000; resolves once the
  // server has ended the stream.
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    let sent = 0;
    let closing = false;
    const send = () => {
      sent = process.hrtime.bigint();
      stream.write(FRAME);
    };
    stream.on("data", (chunk) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      while (buffer.length >= 2) {
        const length = buffer[1] & 0x7f;
        if (length >= 126) {
          stats.mismatches++;
          buffer = Buffer.alloc(0);
          break;
        }
        if (buffer.length < 2 + length) break;
        const frame = buffer.subarray(0, 2 + length);
        buffer = buffer.subarray(2 + length);
        if ((frame[0] & 0x0f) === 0x8) continue; // the server's close
        stats.messages++;
        stats.latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
        if (!frame.equals(EXPECTED)) stats.mismatches++;
        if (Date.now() < until) {
          send();
        } else if (!closing) {
          closing = true;
          stream.end(CLOSE);
        }
      }
    });
    stream.on("close", resolve);
    send();
  });
}

function connect() {
  return new Promise((resolve) => {
    const session = http2.connect(url.origin);
    session.on("error", (error) => fail("session " + error.message));
    session.once("remoteSettings", (settings) => {
      if (!settings.enableConnectProtocol) fail("no SETTINGS_ENABLE_CONNECT_PROTOCOL");
      resolve(session);
    });
  });
}

function percentile(sorted, fraction) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))];
}

async function main() {
  const watchdog = setTimeout(() => {
    fail("timed out");
    report(seconds + 60);
    process.exit(1);
  }, (seconds + 60) * 1000);
  const sessions = [];
  for (let i = 0; i < connections; i++) sessions.push(await connect());
  const streams = [];
  for (const session of sessions) {
    for (let i = 0; i < perConnection; i++) streams.push(await open(session));
  }
  const began = process.hrtime.bigint();
  until = Date.now() + seconds * 1000;
  await Promise.all(streams.map(run));
  const elapsed = Number(process.hrtime.bigint() - began) / 1e9;
  for (const session of sessions) session.close();
  clearTimeout(watchdog);
  report(elapsed);
}

function report(elapsed) {
  const sorted = stats.latencies.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      messages: stats.messages,
      mismatches: stats.mismatches,
      errors: stats.errors,
      seconds: elapsed,
      rate: stats.messages / elapsed,
      mb_per_s: (stats.messages * PAYLOAD.length) / elapsed / 1e6,
      p50_ms: percentile(sorted, 0.5),
      p99_ms: percentile(sorted, 0.99),
      scenario: scenario,
      client: "node http2 " + process.versions.nghttp2,
    }),
  );
}

main();
