// Node's http2 module as an RFC 8441 client of wsecho: waits for the
// server's SETTINGS to allow the extended CONNECT, opens `:protocol
// websocket` on a stream, and frames the WebSocket itself (masked, no
// extension): sends text and binary, small and 1 MiB, checks every echo,
// closes with 4000 "bye", and prints the close code and reason the server
// sent back and how the stream ended.
//   node h2_client.js URL [CA]     (https://HOST:PORT/socket or http://...)
// https:// verifies the server against the CA file CA when given, or not at
// all (rejectUnauthorized false); http:// is HTTP/2 with prior knowledge.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const http2 = require("http2");

const url = new URL(process.argv[2]);
const ca = process.argv[3];
const messages = [
  [Buffer.from("Hello, world!"), false],
  [Buffer.from([0, 1, 2, 255]), true],
  [Buffer.from("\u00e9".repeat(1 << 19)), false],
  [crypto.randomBytes(1 << 20), true],
];
const timer = setTimeout(() => fail("timed out"), 30000);
let next = 0;
let received = Buffer.alloc(0);
let fragments = [];
let fragmentOpcode = 0;

function fail(why) {
  console.log("error " + why);
  process.exit(1);
}

function frame(opcode, payload) {
  // A final client frame, masked as RFC 6455 5.3 (and RFC 8441 5) require.
  const mask = crypto.randomBytes(4);
  let head;
  if (payload.length < 126) {
    head = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
  } else if (payload.length < 65536) {
    head = Buffer.alloc(4);
    head.writeUInt16BE(payload.length, 2);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 126;
  } else {
    head = Buffer.alloc(10);
    head.writeBigUInt64BE(BigInt(payload.length), 2);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
  }
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, masked]);
}

const session = http2.connect(
  url.origin,
  ca ? { ca: fs.readFileSync(ca) } : { rejectUnauthorized: false },
);
session.on("error", (error) => fail("session " + error.message));
session.once("remoteSettings", (settings) => {
  if (!settings.enableConnectProtocol) fail("no enableConnectProtocol in SETTINGS");
  console.log("alpn " + (session.alpnProtocol || "none"));
  const stream = session.request(
    {
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": url.protocol.slice(0, -1),
      ":path": url.pathname,
      ":authority": url.host,
      "sec-websocket-version": "13",
      origin: url.origin,
    },
    { endStream: false },
  );
  stream.on("response", (headers) => {
    console.log("status " + headers[":status"]);
    if (headers[":status"] !== 200) fail("refused");
    send(stream);
  });
  stream.on("data", (chunk) => {
    received = Buffer.concat([received, chunk]);
    parse(stream);
  });
  stream.on("end", () => console.log("end_stream"));
  stream.on("close", () => {
    clearTimeout(timer);
    console.log("stream closed rst=" + stream.rstCode);
    session.close();
  });
  stream.on("error", (error) => fail("stream " + error.message));
});

function send(stream) {
  if (next < messages.length) {
    const [data, binary] = messages[next];
    stream.write(frame(binary ? 2 : 1, data));
  } else {
    console.log("echoed " + messages.length);
    const reason = Buffer.from("bye");
    const body = Buffer.alloc(2 + reason.length);
    body.writeUInt16BE(4000, 0);
    reason.copy(body, 2);
    stream.write(frame(8, body));
  }
}

function parse(stream) {
  for (;;) {
    if (received.length < 2) return;
    const fin = received[0] & 0x80;
    const opcode = received[0] & 0x0f;
    if (received[1] & 0x80) fail("the server masked a frame");
    let length = received[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (received.length < 4) return;
      length = received.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (received.length < 10) return;
      length = Number(received.readBigUInt64BE(2));
      offset = 10;
    }
    if (received.length < offset + length) return;
    const payload = received.subarray(offset, offset + length);
    received = received.subarray(offset + length);
    if (opcode === 8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      console.log(`closed ${code} ${payload.subarray(2).toString()}`);
      // The closing handshake is done: END_STREAM on our side.
      stream.end();
      continue;
    }
    if (opcode === 9) {
      stream.write(frame(10, payload));
      continue;
    }
    if (opcode === 10) continue;
    if (opcode !== 0) fragmentOpcode = opcode;
    fragments.push(Buffer.from(payload));
    if (!fin) continue;
    const data = Buffer.concat(fragments);
    fragments = [];
    const [sent, binary] = messages[next];
    if ((fragmentOpcode === 2) !== binary || !sent.equals(data)) {
      fail(`echo ${next}: opcode ${fragmentOpcode}, ${data.length} bytes`);
    }
    next += 1;
    send(stream);
  }
}
