// Node's ws (the library under wscat) as a test client of wsecho: sends text
// and binary, small and 1 MiB, checks every echo, closes with 4000 "bye" and
// prints the close code and reason the server sent back.
//   node ws_client.js URL [compress: 1 or 0]
"use strict";
const crypto = require("crypto");
const WebSocket = require("ws");

const [url, compress] = process.argv.slice(2);
const messages = [
  [Buffer.from("Hello, world!"), false],
  [Buffer.from([0, 1, 2, 255]), true],
  [Buffer.from("\u00e9".repeat(1 << 19)), false],
  [crypto.randomBytes(1 << 20), true],
];
const ws = new WebSocket(url, { perMessageDeflate: compress === "1", handshakeTimeout: 30000 });
let next = 0;
const timer = setTimeout(() => fail("timed out"), 30000);

function fail(why) {
  console.log("error " + why);
  process.exit(1);
}

function send() {
  if (next < messages.length) {
    const [data, binary] = messages[next];
    ws.send(binary ? data : data.toString(), { binary });
  } else {
    console.log("echoed " + messages.length);
    ws.close(4000, "bye");
  }
}

ws.on("open", () => {
  console.log("extensions " + JSON.stringify(ws.extensions));
  send();
});
ws.on("message", (data, isBinary) => {
  const [sent, binary] = messages[next];
  if (isBinary !== binary || !sent.equals(data)) {
    fail(`echo ${next}: binary ${isBinary}, ${data.length} bytes`);
  }
  next += 1;
  send();
});
ws.on("close", (code, reason) => {
  clearTimeout(timer);
  console.log(`closed ${code} ${reason.toString()}`);
});
ws.on("error", (error) => fail(error.message));
