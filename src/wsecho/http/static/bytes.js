// Bytes as people read them: a hex preview for a log line, a hex dump
// (offset, hex, ASCII) for the expanded view, base64 for the export, and
// JSON pretty-printed when a text message is JSON.

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

// The first bytes of a message, for a collapsed log line.
export function preview(bytes, count = 16) {
  const shown = Array.from(bytes.subarray(0, count), (b) => HEX[b]).join(" ");
  return bytes.length > count ? shown + " …" : shown;
}

// An xxd-like dump: "0010  48 65 6c 6c 6f ...  |Hello...|", one line per
// `width` bytes, the offsets as wide as the largest needs (4 hex digits at
// least), so that eight bytes a line fit a phone. Built as one string: a
// DOM node per byte would be far too slow for a message of megabytes.
export function dump(bytes, width = 16) {
  const lines = [];
  const digits = Math.max(4, Math.max(0, bytes.length - 1).toString(16).length);
  for (let offset = 0; offset < bytes.length; offset += width) {
    const row = bytes.subarray(offset, offset + width);
    let hex = "";
    let text = "";
    for (let i = 0; i < width; i++) {
      if (i && i % 8 === 0) { hex += " "; }
      hex += i < row.length ? HEX[row[i]] + " " : "   ";
      if (i < row.length) { text += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : "."; }
    }
    lines.push(offset.toString(16).padStart(digits, "0") + "  " + hex + " |" + text + "|");
  }
  return lines.join("\n");
}

export function parseHex(text) {
  const digits = text.replace(/[\s,:]/g, "").replace(/^0x/i, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) { return null; }
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = parseInt(digits.substr(i * 2, 2), 16);
  }
  return bytes;
}

export function base64(bytes) {
  // btoa takes a "binary string"; build it in slices, as a spread of a
  // whole large array would exceed the engine's argument limit.
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// The pretty form of a text message that is a JSON object or array, or
// null: a bare number or string parses as JSON too, but gains nothing.
export function prettyJson(text) {
  const start = text.trimStart()[0];
  if (start !== "{" && start !== "[") { return null; }
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (error) {
    return null;
  }
}

// Pretty JSON as text nodes and spans classed by token (keys, strings,
// numbers, literals), for colour; no innerHTML, so nothing in a message can
// become markup.
const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\b(?:true|false|null)\b/g;

export function jsonNodes(pretty) {
  const nodes = [];
  let last = 0;
  for (const match of pretty.matchAll(TOKEN)) {
    if (match.index > last) { nodes.push(document.createTextNode(pretty.slice(last, match.index))); }
    const span = document.createElement("span");
    span.className = match[2] ? "j-key" : match[1] ? "j-str" : /^[tfn]/.test(match[0]) ? "j-lit" : "j-num";
    span.textContent = match[0];
    nodes.push(span);
    last = match.index + match[0].length;
  }
  if (last < pretty.length) { nodes.push(document.createTextNode(pretty.slice(last))); }
  return nodes;
}
