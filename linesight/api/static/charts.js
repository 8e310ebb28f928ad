/* Plain SVG line charts drawn here (no library, no CDN): time on x, one polyline per series. */
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b9eff", "#f5a524", "#2fbf71", "#d66efd", "#ff6b6b", "#4dd4c6", "#c9c9c9", "#ffd166"];

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  children.flat(Infinity).forEach((child) => child && el.append(child));
  return el;
}

/* A "nice" upper bound for the y axis (1, 2 or 5 times a power of ten). */
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

const hhmm = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });

/* series: [{name, points: [[tMs, value|null], ...]}] (null breaks the line); returns a <figure>. */
function lineChart({ title, series, xMin, xMax, yLabel, yFormat = (v) => String(v), yMax = null, id = null }) {
  const W = 640, H = 220, L = 52, R = 12, T = 12, B = 28;
  const top = yMax ?? niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1] ?? 0))));
  const x = (t) => L + ((t - xMin) / Math.max(1, xMax - xMin)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => [
    svg("line", { x1: L, x2: W - R, y1: y(f * top), y2: y(f * top), class: "grid" }),
    svg("text", { x: L - 6, y: y(f * top) + 4, "text-anchor": "end", class: "tick" }, document.createTextNode(yFormat(f * top))),
  ]);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const t = xMin + f * (xMax - xMin);
    return svg("text", { x: x(t), y: H - 8, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle", class: "tick" }, document.createTextNode(hhmm(t)));
  });
  const lines = series.map((s, i) => {
    const segments = [];
    let current = [];
    for (const [t, v] of s.points) {
      if (v === null || v === undefined) { if (current.length) segments.push(current); current = []; continue; }
      current.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    }
    if (current.length) segments.push(current);
    const color = PALETTE[i % PALETTE.length];
    return segments.map((pts) => pts.length === 1
      ? svg("circle", { cx: pts[0].split(",")[0], cy: pts[0].split(",")[1], r: 2.5, fill: color })
      : svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round", "data-series": s.name }));
  });
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title },
    grid, ticks, lines);
  const legend = h("div", { class: "legend" }, series.map((s, i) => h("span", {}, h("i", { style: `background:${PALETTE[i % PALETTE.length]}` }), s.name)));
  return h("figure", { class: "chart-box", id }, h("figcaption", {}, title, h("span", { class: "muted", text: ` · ${yLabel}` })), series.length ? chart : h("div", { class: "empty", text: "No frames in this range." }), legend);
}
