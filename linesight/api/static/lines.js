/* The line screen (#/lines): per-line tiles, throughput and defect-share trends; and #/dead-letters. */
"use strict";

const TREND_HOUR_MS = 15000;  // 60 s buckets
const TREND_SHIFT_MS = 60000;  // 300 s buckets

function lineTile(tile) {
  const share = tile.flagged_share;
  return h("a", { class: "tile " + (tile.is_up ? "up" : "down"), href: `#/live?line=${encodeURIComponent(tile.line_id)}`,
    "data-line": tile.line_id, title: "open the live page of this line" },
    h("div", { class: "top" }, h("span", { class: "name", text: tile.line_id }),
      h("span", { class: "badge " + (tile.is_up ? "ok" : "bad"), text: tile.is_up ? "up" : "down" })),
    h("div", { class: "figures" },
      h("div", {}, h("div", { class: "value", text: tile.frames_per_s.toFixed(2) }), h("div", { class: "label", text: "frames/s (1 min)" })),
      h("div", {}, h("div", { class: "value" + (share > 0 ? " warn" : ""), text: share === null ? "–" : pct(share) }),
        h("div", { class: "label", text: `flagged (1 h): ${tile.flagged_window} of ${tile.frames_window}` }))),
    h("div", { class: "row last" },
      h("span", { class: "muted", title: clock(tile.last_frame_at), text: `last frame ${ago(tile.last_frame_at)}` }),
      tile.unacknowledged_window > 0 && h("span", { class: "to-ack", title: "flagged in the last hour, not acknowledged yet",
        text: `${tile.unacknowledged_window} to acknowledge` })));
}

/* Buckets -> chart series: throughput per line (missing bucket = 0 frames), defect share per class (missing = gap). */
function trendSeries(trend) {
  const step = trend.bucket_s * 1000;
  const start = Math.floor(new Date(trend.since).getTime() / step) * step;
  const end = new Date(trend.until).getTime();
  const buckets = [];
  for (let t = start; t < end; t += step) buckets.push(t);
  const sum = (key) => {
    const table = new Map();
    for (const p of trend.points) {
      const row = table.get(p[key]) || new Map();
      const t = new Date(p.t).getTime();
      const cell = row.get(t) || { frames: 0, flagged: 0 };
      cell.frames += p.frames;
      cell.flagged += p.flagged;
      row.set(t, cell);
      table.set(p[key], row);
    }
    return [...table.entries()].sort(([a], [b]) => a.localeCompare(b));
  };
  const throughput = sum("line_id").map(([name, row]) => ({ name, points: buckets.map((t) => [t, ((row.get(t) || { frames: 0 }).frames) / trend.bucket_s]) }));
  const share = sum("product_class").map(([name, row]) => ({ name, points: buckets.map((t) => {
    const cell = row.get(t);
    return [t, cell && cell.frames ? (100 * cell.flagged) / cell.frames : null];
  }) }));
  return { throughput, share, xMin: start, xMax: end };
}

function renderLines() {
  const params = hashQuery();
  const tiles = h("div", { class: "tiles", id: "line-tiles" }, h("div", { class: "empty", text: "Loading lines…" }));
  const range = h("select", { id: "trend-range", "aria-label": "trend range" },
    h("option", { value: "hour", text: "last hour" }), h("option", { value: "shift", text: "last shift" }));
  range.value = params.get("range") || "hour";
  const lineSelect = h("select", { id: "trend-line", "aria-label": "line" }, h("option", { value: "", text: "all lines" }));
  const charts = h("div", { class: "charts", id: "trend-charts" });
  const summary = h("div", { class: "muted", id: "lines-summary" });
  view.replaceChildren(
    h("h1", {}, "Lines", summary),
    tiles,
    h("section", { class: "panel trends" },
      h("div", { class: "row" }, h("h2", { text: "Trends" }), h("span", { class: "spacer" }), lineSelect, range),
      charts));
  let timer = null;
  let alive = true;
  let wantedLine = params.get("line") || "";
  let trendAt = 0;  // the shift's trend scans hours of rows: refresh it less often than the tiles
  async function tick(force = false) {
    try {
      const query = new URLSearchParams({ range: range.value });
      if (wantedLine) query.set("line", wantedLine);
      const due = force || Date.now() - trendAt >= (range.value === "hour" ? TREND_HOUR_MS : TREND_SHIFT_MS);
      const [lines, trend] = await Promise.all([api("/api/lines"), due ? api(`/api/trends?${query}`) : null]);
      if (!alive) return;
      tiles.replaceChildren(...(lines.lines.length ? lines.lines.map(lineTile) : [h("div", { class: "empty", text: "No line has sent a frame yet." })]));
      const down = lines.lines.filter((t) => !t.is_up).length;
      summary.textContent = `${lines.lines.length} line${lines.lines.length === 1 ? "" : "s"}, ${down} down (no frame for ${lines.down_after_s} s)`;
      const frames = lines.lines.reduce((n, t) => n + t.frames_window, 0);
      const flagged = lines.lines.reduce((n, t) => n + t.flagged_window, 0);
      document.getElementById("rate-pill").textContent = `${frames} frames · ${flagged} flagged (1 h)`;
      const known = new Set([...lineSelect.options].map((o) => o.value));
      lines.lines.forEach((t) => known.has(t.line_id) || lineSelect.append(h("option", { value: t.line_id, text: t.line_id })));
      lineSelect.value = wantedLine;
      if (!trend) return;
      trendAt = Date.now();
      const { throughput, share, xMin, xMax } = trendSeries(trend);
      const scope = wantedLine ? ` · ${wantedLine}` : "";
      charts.replaceChildren(
        lineChart({ id: "chart-throughput", title: `Throughput per line${scope}`, series: throughput, xMin, xMax, yLabel: `frames/s, ${trend.bucket_s} s buckets`, yFormat: (v) => v.toFixed(v < 1 ? 2 : 1) }),
        lineChart({ id: "chart-share", title: `Defect share per class${scope}`, series: share, xMin, xMax, yLabel: "% flagged", yFormat: (v) => `${v.toFixed(0)} %`, yMax: niceMax(Math.max(5, ...share.flatMap((s) => s.points.map((p) => p[1] ?? 0)))) }));
    } catch (error) {
      if (alive) toast(`line screen: ${error.message}`, true);
    } finally {
      if (alive) timer = setTimeout(tick, POLL_LINES_MS);
    }
  }
  const refresh = () => { setHashQuery("/lines", [["range", range.value === "hour" ? "" : range.value], ["line", wantedLine]]); clearTimeout(timer); tick(true); };
  range.addEventListener("change", refresh);
  lineSelect.addEventListener("change", () => { wantedLine = lineSelect.value; refresh(); });
  tick(true);
  return () => { alive = false; clearTimeout(timer); };
}

function renderDeadLetters() {
  const tbody = h("tbody", { id: "dead-letter-rows" });
  const note = h("p", { class: "muted", id: "dead-letter-note" });
  view.replaceChildren(h("h1", { text: "Dead letters" }),
    h("p", { class: "muted", text: "Frames the stream could not inspect, newest first, read from the dead-letter topic. Replay sends a frame dead-lettered by mistake (e.g. a class whose bank did not exist yet) back to the frames topic; a frame is stored once." }),
    note,
    h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["when", "reason", "line", "frame", "class", "detail", "source", ""].map((t) => h("th", { text: t })))),
      tbody));
  async function load() {
    try {
      const body = await api("/api/dead-letters?limit=200");
      note.textContent = body.available ? `topic ${body.topic}` : body.detail;
      tbody.replaceChildren(...body.items.map((d) => h("tr", { "data-reason": d.reason },
        h("td", { title: d.failed_at || "", text: d.failed_at ? ago(d.failed_at) : "–" }),
        h("td", {}, h("span", { class: "badge reason", text: d.reason })),
        h("td", { text: d.line_id || "–" }), h("td", { class: "mono", text: d.frame_id || "–" }),
        h("td", { text: d.product_class || "–" }), h("td", { class: "detail-text", text: d.detail }),
        h("td", { class: "mono muted", text: d.source_topic ? `${d.source_topic}[${d.source_partition}]@${d.source_offset}` : "–" }),
        h("td", {}, d.replayable ? h("button", { type: "button", class: "replay", text: "Replay", onclick: async (event) => {
          event.target.disabled = true;
          try {
            toast((await write(`/api/dead-letters/${d.partition}/${d.offset}/replay`, { method: "POST" })).message);
          } catch (error) {
            toast(error.message, true);
            event.target.disabled = false;
          }
        } }) : h("span", { class: "muted", title: "the frame's bytes are not in the dead letter", text: "no frame" })))));
      if (!body.items.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "empty", text: body.available ? "No dead letters." : "Dead letters cannot be read here." })));
    } catch (error) {
      toast(error.message, true);
    }
  }
  load();
  return () => {};
}
