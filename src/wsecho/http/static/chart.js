// The session's round trips as an inline SVG: one point per echo (the most
// recent ones that fit), a line through them, and the p50 and p99 of every
// round trip of the session as dashed lines. Drawn at the element's own
// pixel size, so that text stays legible on a phone.

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 180;
const PAD = { left: 52, right: 12, top: 12, bottom: 24 };

// Nearest-rank percentile of sorted values.
export function percentile(sorted, p) {
  if (!sorted.length) { return NaN; }
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function ms(value) {
  return value.toFixed(1) + " ms";
}

// An axis label: the round values niceCeil gives, without a needless ".0".
function tick(value) {
  return Number(value.toPrecision(3)) + " ms";
}

// A round axis maximum at or above `value`: 1, 2 or 5 times a power of ten.
function niceCeil(value) {
  if (!(value > 0)) { return 1; }
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) { return step * power; }
  }
  return 10 * power;
}

function node(parent, name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) { element.setAttribute(key, value); }
  if (text !== undefined) { element.textContent = text; }
  parent.appendChild(element);
  return element;
}

// Draws `rtts` (milliseconds, oldest first) into `svg`; returns
// {count, p50, p99} of all of them.
export function draw(svg, rtts) {
  const width = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 600);
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("height", HEIGHT);
  svg.replaceChildren();
  const sorted = Float64Array.from(rtts).sort();
  const stats = { count: rtts.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };

  const plotWidth = width - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  // A point every 6 px at most: the most recent that fit.
  const shown = rtts.slice(-Math.max(2, Math.floor(plotWidth / 6)));
  const top = niceCeil(Math.max(stats.p99 || 0, ...shown));
  const x = (i) => PAD.left + (shown.length < 2 ? plotWidth / 2 : (i * plotWidth) / (shown.length - 1));
  const y = (v) => PAD.top + plotHeight - (Math.min(v, top) / top) * plotHeight;

  const axes = node(svg, "g", { class: "axes" });
  for (const value of [0, top / 2, top]) {
    node(axes, "line", { x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value), class: value ? "grid" : "axis" });
    node(axes, "text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, tick(value));
  }
  const first = rtts.length - shown.length + 1;
  node(axes, "text", { x: PAD.left, y: HEIGHT - 6 }, shown.length ? "echo " + first : "");
  node(axes, "text", { x: width - PAD.right, y: HEIGHT - 6, "text-anchor": "end" },
    shown.length ? "echo " + rtts.length : "");
  if (!shown.length) { return stats; }

  for (const [name, value] of [["p50", stats.p50], ["p99", stats.p99]]) {
    const level = node(svg, "g", { class: "level " + name });
    node(level, "line", { x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value) });
    // p50 labelled on the left, p99 on the right, so that they never overlap.
    const left = name === "p50";
    node(level, "text", {
      x: left ? PAD.left + 4 : width - PAD.right - 4, y: y(value) - 4, "text-anchor": left ? "start" : "end"
    }, name + " " + ms(value));
  }
  node(svg, "polyline", {
    class: "series", points: shown.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ")
  });
  const points = node(svg, "g", { class: "points" });
  shown.forEach((v, i) => {
    const point = node(points, "circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3 });
    node(point, "title", {}, "echo " + (first + i) + ": " + ms(v));
  });
  return stats;
}
