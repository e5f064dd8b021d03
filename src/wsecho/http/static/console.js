// The echo console of wsecho's index page: connects to "/socket" on the
// same host ("ws://", or "wss://" under https), offering the subprotocols
// given, and shows what the server agreed; sends text, hex or a file; logs
// every message and event with its time and direction (JSON pretty, binary
// as expandable hex with a download); filters and exports the log; charts
// each echo's round trip; closes with a code and reason; reconnects with a
// backoff when asked to.
import { base64, dump, jsonNodes, parseHex, prettyJson, preview } from "/bytes.js";
import { draw, ms } from "/chart.js";

const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/socket";
const $ = (id) => document.getElementById(id);
const logEl = $("log");
const input = $("message");
const kind = $("kind");
const autoReconnect = $("auto-reconnect");
const encoder = new TextEncoder();
// A long session keeps its most recent lines; the counts and the chart
// keep everything.
const MAX_ENTRIES = 5000;

let socket = null;
let inFlight = [];  // when each unanswered message was sent, oldest first
let records = [];   // the log, oldest first: what the export writes
let rtts = [];      // every round trip of the session, in milliseconds
let counts = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0 };
let serial = 0;
const retry = { timer: null, ticker: null, attempt: 0 };

function element(name, className, text) {
  const made = document.createElement(name);
  if (className) { made.className = className; }
  if (text !== undefined) { made.textContent = text; }
  return made;
}

function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

function clock(date) {
  const two = (n) => String(n).padStart(2, "0");
  return two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds()) +
    "." + String(date.getMilliseconds()).padStart(3, "0");
}

function showCounts() {
  $("counts").textContent = "sent " + plural(counts.sent, "message") + " (" +
    plural(counts.sentBytes, "byte") + "), received " + counts.received + " (" +
    plural(counts.receivedBytes, "byte") + ")";
}

// The log ---------------------------------------------------------------

function matches(record) {
  const want = $("filter-kind").value;
  if (want !== "all" && record.direction !== want) { return false; }
  const needle = $("filter").value.trim().toLowerCase();
  if (!needle) { return true; }
  const haystack = record.direction + " " + (record.text !== undefined ? record.text : "") + " " +
    (record.summary || "");
  return haystack.toLowerCase().includes(needle);
}

function showFiltered() {
  let shown = 0;
  for (const record of records) {
    record.line.hidden = !matches(record);
    shown += record.line.hidden ? 0 : 1;
  }
  const filtering = $("filter").value.trim() || $("filter-kind").value !== "all";
  $("shown").textContent = filtering ? "showing " + shown + " of " + plural(records.length, "line") : "";
}

function binaryBody(record) {
  const body = element("div", "body binary");
  const details = element("details");
  const summary = element("summary", "", record.summary);
  const full = element("pre", "dump");
  full.tabIndex = 0;
  details.append(summary, full);
  // The dump is made on the first expansion, from the kept Blob: most lines
  // are never expanded, and a Blob is the only copy of the bytes we keep.
  details.addEventListener("toggle", () => {
    if (!details.open || full.dataset.done) { return; }
    full.dataset.done = "1";
    full.textContent = "…";
    const width = matchMedia("(max-width: 40em)").matches ? 8 : 16;
    record.blob.arrayBuffer().then((buffer) => {
      full.textContent = dump(new Uint8Array(buffer), width) || "(empty)";
    });
  });
  const download = element("a", "download", "Download");
  download.href = record.href = URL.createObjectURL(record.blob);
  download.download = "wsecho-" + record.direction + "-" + record.serial + ".bin";
  download.setAttribute("aria-label", "Download the " + plural(record.size, "byte") + " " +
    record.direction + " at " + clock(record.time));
  body.append(details, download);
  return body;
}

function addEntry(direction, type, fields) {
  const record = Object.assign({ time: new Date(), direction, type, serial: ++serial }, fields);
  const line = element("div", "entry");
  line.dataset.direction = direction;
  line.dataset.type = type;
  const meta = element("span", "meta");
  const time = element("time", "", clock(record.time));
  time.dateTime = record.time.toISOString();
  meta.append(time, " ", element("span", "dir", direction));
  if (type !== "event") {
    meta.append(" ", element("span", "size", (type === "json" ? "JSON" : type) + ", " +
      plural(record.size, "byte")));
  }
  if (record.rtt !== undefined) {
    const rtt = element("span", "rtt", ms(record.rtt));
    rtt.title = "round trip: from the send to this echo";
    meta.append(" ", rtt);
  }
  line.append(meta);
  if (type === "binary") {
    line.append(binaryBody(record));
  } else if (type === "json") {
    const body = element("pre", "body json");
    body.append(...jsonNodes(record.pretty));
    line.append(body);
  } else {
    line.append(element("span", "body", record.text));
  }
  record.line = line;
  records.push(record);
  while (records.length > MAX_ENTRIES) {
    const old = records.shift();
    if (old.href) { URL.revokeObjectURL(old.href); }
    old.line.remove();
  }
  line.hidden = !matches(record);
  // Follow the new lines only if the reader has not scrolled up.
  const following = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 32;
  logEl.appendChild(line);
  if (following) { logEl.scrollTop = logEl.scrollHeight; }
  if ($("shown").textContent) { showFiltered(); }
  return record;
}

function event(text) { addEntry("event", "event", { text }); }

function message(direction, data, extra) {
  if (typeof data === "string") {
    const pretty = prettyJson(data);
    return addEntry(direction, pretty === null ? "text" : "json",
      Object.assign({ text: data, pretty, size: encoder.encode(data).length }, extra));
  }
  const bytes = new Uint8Array(data);
  const named = extra && extra.name ? extra.name + ", " : "";
  return addEntry(direction, "binary", Object.assign({
    size: bytes.length,
    blob: new Blob([bytes], { type: "application/octet-stream" }),
    summary: "binary, " + named + plural(bytes.length, "byte") + (bytes.length ? ": " + preview(bytes) : "")
  }, extra));
}

// The chart --------------------------------------------------------------

let chartPending = false;

function chartLater() {
  if (chartPending) { return; }
  chartPending = true;
  requestAnimationFrame(() => {
    chartPending = false;
    const stats = draw($("rtt-chart"), rtts);
    $("rtt-stats").textContent = stats.count
      ? plural(stats.count, "round trip") + ": p50 " + ms(stats.p50) + ", p99 " + ms(stats.p99) +
        ", last " + ms(rtts[rtts.length - 1])
      : "No echo yet: each echo's time from its send to its arrival is drawn here.";
  });
}

// The connection ----------------------------------------------------------

function offered() {
  return $("subprotocols").value.split(/[\s,]+/).filter(Boolean);
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
  const open = state === "open";
  $("send-button").disabled = !open;
  $("file").disabled = !open;
  $("close").disabled = !open;
  $("reconnect").textContent = state === "closed" ? "Connect" : "Reconnect";
}

function cancelRetry() {
  clearTimeout(retry.timer);
  clearInterval(retry.ticker);
  retry.timer = retry.ticker = null;
  $("retry").textContent = "";
}

function scheduleRetry() {
  const delay = Math.min(30, Math.pow(2, retry.attempt));
  retry.attempt += 1;
  const due = Date.now() + delay * 1000;
  const tick = () => {
    $("retry").textContent = "(reconnecting in " + Math.max(1, Math.ceil((due - Date.now()) / 1000)) + " s)";
  };
  tick();
  retry.ticker = setInterval(tick, 1000);
  retry.timer = setTimeout(connect, delay * 1000);
  event("reconnecting in " + plural(delay, "second") + " (attempt " + retry.attempt + ")");
}

function connect() {
  cancelRetry();
  if (socket && socket.readyState <= WebSocket.OPEN) {
    socket.byUser = true;
    socket.close(1000);
  }
  inFlight = [];
  const protocols = offered();
  let ws;
  try {
    ws = new WebSocket(url, protocols);
  } catch (error) {
    socket = null;
    setStatus("closed", "not connected");
    event("cannot connect: " + error.message);
    return;
  }
  socket = ws;
  ws.binaryType = "arraybuffer";
  setStatus("connecting", "connecting");
  for (const id of ["protocol", "deflate", "extensions"]) { $(id).textContent = "…"; }
  ws.onopen = () => {
    if (ws !== socket) { return; }
    ws.opened = true;
    retry.attempt = 0;
    setStatus("open", "open");
    $("protocol").textContent = ws.protocol || "none";
    $("deflate").textContent = /(^|,)\s*permessage-deflate/.test(ws.extensions) ? "permessage-deflate" : "none";
    $("extensions").textContent = ws.extensions || "none";
    event("connected to " + url + (protocols.length ? ", offered " + protocols.join(", ") : "") +
      "; subprotocol " + (ws.protocol || "none") + "; extensions " + (ws.extensions || "none"));
  };
  ws.onmessage = (received) => {
    if (ws !== socket) { return; }
    const sent = inFlight.shift();
    const rtt = sent === undefined ? undefined : performance.now() - sent;
    const record = message("received", received.data, rtt === undefined ? {} : { rtt });
    counts.received += 1;
    counts.receivedBytes += record.size;
    showCounts();
    if (rtt !== undefined) {
      rtts.push(rtt);
      chartLater();
    }
  };
  ws.onclose = (closed) => {
    if (ws !== socket) { return; }
    const how = "closed " + closed.code + (closed.reason ? " " + closed.reason : "");
    setStatus("closed", how);
    if (!ws.opened) {
      for (const id of ["protocol", "deflate", "extensions"]) { $(id).textContent = "-"; }
    }
    event("connection " + how + (closed.wasClean ? "" : " (not clean)"));
    if (!ws.opened && protocols.length) {
      event("if the server accepts none of the subprotocols offered (" + protocols.join(", ") +
        "), browsers refuse the connection: clear the field or offer one it speaks");
    }
    if (autoReconnect.checked && !ws.byUser) { scheduleRetry(); }
  };
  ws.onerror = () => {
    if (ws === socket) { event("connection error"); }
  };
}

// Sending and closing -------------------------------------------------------

function send(data, extra) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    event("not connected: nothing sent");
    return;
  }
  socket.send(data);
  inFlight.push(performance.now());
  const record = message("sent", data, extra);
  counts.sent += 1;
  counts.sentBytes += record.size;
  showCounts();
}

function sendInput() {
  if (kind.value === "hex") {
    const bytes = parseHex(input.value);
    if (bytes === null) {
      event("not hex: give pairs of hex digits (00 ff 7f)");
      return;
    }
    send(bytes);
  } else {
    send(input.value);
  }
}

$("send").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  sendInput();
});
input.addEventListener("keydown", (pressed) => {
  if (pressed.key === "Enter" && !pressed.shiftKey && !pressed.isComposing) {
    pressed.preventDefault();
    sendInput();
  }
});
$("file").addEventListener("change", function () {
  const file = this.files[0];
  if (!file) { return; }
  file.arrayBuffer().then((buffer) => send(new Uint8Array(buffer), { name: file.name }));
  this.value = "";
});
$("closing").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    event("not connected");
    return;
  }
  const code = Number($("close-code").value);
  try {
    socket.byUser = true;
    socket.close(code, $("close-reason").value);
  } catch (error) {
    socket.byUser = false;
    event("cannot close with " + $("close-code").value +
      ": the code must be 1000, or 3000 to 4999, and the reason at most 123 bytes");
  }
});
$("connection").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  retry.attempt = 0;
  connect();
});
autoReconnect.addEventListener("change", () => {
  if (!autoReconnect.checked) {
    cancelRetry();
  } else if ((!socket || socket.readyState === WebSocket.CLOSED) && !retry.timer) {
    scheduleRetry();
  }
});

// The log's tools -------------------------------------------------------------

$("filter").addEventListener("input", showFiltered);
$("filter-kind").addEventListener("change", showFiltered);
$("clear").addEventListener("click", () => {
  for (const record of records) {
    if (record.href) { URL.revokeObjectURL(record.href); }
  }
  records = [];
  rtts = [];
  logEl.textContent = "";
  counts = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0 };
  showCounts();
  showFiltered();
  chartLater();
});

function saveAs(blob, name) {
  const link = element("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

$("export").addEventListener("click", async () => {
  const entries = [];
  for (const record of records) {
    const entry = { time: record.time.toISOString(), direction: record.direction, type: record.type };
    if (record.type !== "event") { entry.size = record.size; }
    if (record.text !== undefined) { entry.text = record.text; }
    if (record.name) { entry.name = record.name; }
    if (record.blob) { entry.base64 = base64(new Uint8Array(await record.blob.arrayBuffer())); }
    if (record.rtt !== undefined) { entry.round_trip_ms = Number(record.rtt.toFixed(3)); }
    entries.push(entry);
  }
  const sorted = Float64Array.from(rtts).sort();
  const session = {
    url,
    exported: new Date().toISOString(),
    subprotocol: socket && socket.protocol || null,
    extensions: socket && socket.extensions || null,
    counts: {
      sent: counts.sent, sent_bytes: counts.sentBytes,
      received: counts.received, received_bytes: counts.receivedBytes
    },
    round_trips_ms: Array.from(rtts, (v) => Number(v.toFixed(3))),
    p50_ms: sorted.length ? sorted[Math.ceil(0.5 * sorted.length) - 1] : null,
    p99_ms: sorted.length ? sorted[Math.ceil(0.99 * sorted.length) - 1] : null,
    entries
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  saveAs(new Blob([JSON.stringify(session, null, 2)], { type: "application/json" }),
    "wsecho-session-" + stamp + ".json");
});

// The terminal commands, with copy buttons ------------------------------------

function shellWord(word) {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : "'" + word.replace(/'/g, "'\\''") + "'";
}

function commands() {
  const protocols = offered().map(shellWord);
  const each = (flag) => protocols.map((p) => " " + flag + " " + p).join("");
  return [
    ["wsecho-client", "wsecho-client" + each("--subprotocol") + " " + url + ' "Hello, world!"'],
    ["websocat", "websocat" + (protocols.length ? " --protocol " + protocols.join(",") : "") + " " + url],
    ["wscat", "wscat" + each("--subprotocol") + " -c " + url],
    ["python -m websockets", "python -m websockets " + url]
  ];
}

// The Clipboard API needs a secure context (https, or localhost); over plain
// http from another host, copy the way browsers did before it.
async function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (error) {
      // Refused (no focus, or a permission): try the old way.
    }
  }
  const area = element("textarea", "offscreen");
  area.value = text;
  area.setAttribute("readonly", "");
  area.setAttribute("aria-hidden", "true");
  document.body.appendChild(area);
  area.select();
  const done = document.execCommand("copy");
  area.remove();
  return done;
}

function showCommands() {
  const list = $("commands");
  list.replaceChildren();
  for (const [name, command] of commands()) {
    const item = element("li");
    const code = element("code", "", command);
    const button = element("button", "copy", "Copy");
    button.type = "button";
    button.setAttribute("aria-label", "Copy the " + name + " command");
    button.addEventListener("click", async () => {
      const done = await copy(command);
      $("copied").textContent = done ? "Copied: " + command : "Could not copy; select the command instead.";
      button.textContent = done ? "Copied" : "Copy";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    item.append(code, button);
    list.appendChild(item);
  }
}

$("endpoint").textContent = url;
$("subprotocols").addEventListener("input", showCommands);
showCommands();
new ResizeObserver(chartLater).observe($("rtt-chart"));
connect();
