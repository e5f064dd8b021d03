"use strict";
// The echo console of wsecho's index page: connects to /socket on the same
// host (ws: or wss: to match the page), sends text, hex or a file, shows
// each echo with its round-trip time, and closes with a code and reason.
(function () {
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/socket";
  var $ = function (id) { return document.getElementById(id); };
  var statusEl = $("status"), logEl = $("log"), input = $("message"), kind = $("kind");
  var socket = null;
  var inFlight = [];  // when each message was sent, oldest first
  var counts = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0 };
  var encoder = new TextEncoder();

  $("endpoint").textContent = url;
  $("commands").firstChild.textContent = [
    "wsecho-client " + url + ' "Hello, world!"',
    "websocat " + url,
    "wscat -c " + url,
    "python -m websockets " + url
  ].join("\n");

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function showCounts() {
    $("counts").textContent = "sent " + plural(counts.sent, "message") + " (" +
      plural(counts.sentBytes, "byte") + "), received " + counts.received + " (" +
      plural(counts.receivedBytes, "byte") + ")";
  }

  function log(cls, text, rtt) {
    var line = document.createElement("div");
    line.className = cls;
    line.textContent = text;
    if (rtt !== undefined) {
      var span = document.createElement("span");
      span.className = "rtt";
      span.textContent = "  (" + rtt.toFixed(1) + " ms)";
      line.appendChild(span);
    }
    logEl.appendChild(line);
    logEl.scrollTop = logEl.scrollHeight;
  }

  function hex(bytes) {
    var shown = Array.prototype.map.call(bytes.subarray(0, 64), function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join(" ");
    return shown + (bytes.length > 64 ? " ..." : "");
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function connect() {
    if (socket && socket.readyState <= WebSocket.OPEN) { socket.close(1000); }
    setStatus("connecting", "connecting");
    inFlight = [];
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () {
      setStatus("open", "open");
      log("event", "connected to " + url);
    };
    socket.onmessage = function (event) {
      var sent = inFlight.shift();
      var rtt = sent === undefined ? undefined : performance.now() - sent;
      counts.received += 1;
      if (typeof event.data === "string") {
        counts.receivedBytes += encoder.encode(event.data).length;
        log("echo", "< " + event.data, rtt);
      } else {
        var bytes = new Uint8Array(event.data);
        counts.receivedBytes += bytes.length;
        log("echo", "< binary, " + plural(bytes.length, "byte") + ": " + hex(bytes), rtt);
      }
      showCounts();
    };
    socket.onclose = function (event) {
      var how = "closed " + event.code + (event.reason ? " " + event.reason : "");
      setStatus("closed", how);
      log("event", "connection " + how + (event.wasClean ? "" : " (not clean)"));
    };
    socket.onerror = function () { log("event", "connection error"); };
  }

  function send(data, shown, size) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      log("event", "not connected");
      return;
    }
    socket.send(data);
    inFlight.push(performance.now());
    counts.sent += 1;
    counts.sentBytes += size;
    log("sent", "> " + shown);
    showCounts();
  }

  function sendInput() {
    if (kind.value === "hex") {
      var digits = input.value.replace(/[\s,:]/g, "");
      if (!/^([0-9a-fA-F]{2})*$/.test(digits)) {
        log("event", "not hex: give pairs of hex digits (00 ff 7f)");
        return;
      }
      var bytes = new Uint8Array(digits.length / 2);
      for (var i = 0; i < bytes.length; i++) {
        bytes[i] = parseInt(digits.substr(i * 2, 2), 16);
      }
      send(bytes, "binary, " + plural(bytes.length, "byte") + ": " + hex(bytes), bytes.length);
    } else {
      send(input.value, input.value, encoder.encode(input.value).length);
    }
  }

  $("send").addEventListener("submit", function (event) {
    event.preventDefault();
    sendInput();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      sendInput();
    }
  });
  $("file").addEventListener("change", function () {
    var file = this.files[0];
    if (!file) { return; }
    file.arrayBuffer().then(function (buffer) {
      var bytes = new Uint8Array(buffer);
      send(bytes, "binary, " + file.name + ", " + plural(bytes.length, "byte") + ": " + hex(bytes), bytes.length);
    });
    this.value = "";
  });
  $("closing").addEventListener("submit", function (event) {
    event.preventDefault();
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      log("event", "not connected");
      return;
    }
    var code = parseInt($("close-code").value, 10);
    try {
      socket.close(code, $("close-reason").value);
    } catch (error) {
      log("event", "cannot close with " + code + ": 1000, or 3000 to 4999");
    }
  });
  $("reconnect").addEventListener("click", connect);
  $("clear").addEventListener("click", function () {
    logEl.textContent = "";
    counts = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0 };
    showCounts();
  });
  connect();
}());
