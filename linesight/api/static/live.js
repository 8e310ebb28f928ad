/* Live page (#/live?line=L&flagged=1) and history (#/history?...). */
"use strict";

const thumb = (item) => h("img", { src: item.links.overlay, alt: `overlay of inspection ${item.id}`, loading: "lazy" });
const flagBadge = (item) => h("span", { class: "badge " + (item.is_anomalous ? "bad" : "ok"), text: item.is_anomalous ? "flagged" : "ok" });
const reviewKey = (item) => `${item.feedback ? item.feedback.label : ""}|${item.acknowledgement ? 1 : 0}`;
function card(item, onReview) {
  return h("a", { class: "card" + (item.is_anomalous ? " flagged" : ""), href: `#/inspection/${item.id}`, "data-id": item.id },
    thumb(item),
    h("div", { class: "meta" },
      h("div", { class: "top" }, h("span", { text: item.product_class }), h("span", { class: "row tight" }, reviewBadges(item), flagBadge(item))),
      h("div", { class: "mono" }, `${fmt(item.score)} / ${fmt(item.threshold)}`),
      h("div", { class: "muted" }, `${item.line_id} · ${item.camera_id} · ${ago(item.captured_at)}`),
      item.is_anomalous && reviewButtons(item, onReview, null, true)));
}

function renderLive() {
  const params = hashQuery();
  const grid = h("div", { class: "grid", id: "live-grid" });
  const onlyFlagged = h("input", { type: "checkbox", id: "only-flagged", checked: params.get("flagged") === "1" });
  const lineFilter = h("select", { id: "line-filter", "aria-label": "line" }, h("option", { value: "", text: "all lines" }));
  const kpis = h("div", { class: "kpis" });
  const heading = h("h2", { text: "Last hour" });
  view.replaceChildren(
    h("div", { class: "layout" },
      h("aside", { class: "panel" }, heading, kpis),
      h("section", {},
        h("h1", {}, "Latest inspections", h("label", { class: "row" }, "line", lineFilter),
          h("label", { class: "row" }, onlyFlagged, "flagged only")),
        grid)));
  const nodes = new Map();
  let newestId = null;
  let timer = null;
  let alive = true;
  let wantedLine = params.get("line") || "";
  api("/api/lines").then((body) => {
    body.lines.forEach((t) => lineFilter.append(h("option", { value: t.line_id, text: t.line_id })));
    if (wantedLine && ![...lineFilter.options].some((o) => o.value === wantedLine)) lineFilter.append(h("option", { value: wantedLine, text: wantedLine }));
    lineFilter.value = wantedLine;
  }).catch((error) => toast(`lines: ${error.message}`, true));
  const onReview = (updated) => { nodes.delete(updated.id); clearTimeout(timer); tick(); };
  async function tick() {
    try {
      const query = new URLSearchParams({ limit: "24" });
      if (onlyFlagged.checked) query.set("anomalous", "true");
      if (wantedLine) query.set("line", wantedLine);
      const since = new URLSearchParams({ since: new Date(Date.now() - 3600e3).toISOString() });
      if (wantedLine) since.set("line", wantedLine);
      const [page, summary] = await Promise.all([api(`/api/inspections?${query}`), api(`/api/summary?${since}`)]);
      if (!alive) return;
      const items = page.items;
      const children = items.map((item) => {
        let entry = nodes.get(item.id);
        if (!entry || entry.key !== reviewKey(item)) {
          entry = { node: card(item, onReview), key: reviewKey(item) };
          if (newestId !== null && item.id > newestId) entry.node.classList.add("new");
          nodes.set(item.id, entry);
        } else {
          entry.node.querySelector(".muted").textContent = `${item.line_id} · ${item.camera_id} · ${ago(item.captured_at)}`;
        }
        return entry.node;
      });
      grid.replaceChildren(...(children.length ? children : [h("div", { class: "empty", text: "No inspections yet: waiting for frames…" })]));
      newestId = items.length ? Math.max(newestId || 0, items[0].id) : newestId;
      heading.textContent = wantedLine ? `Last hour · ${wantedLine}` : "Last hour";
      renderKpis(kpis, summary.classes);
    } catch (error) {
      if (alive) toast(`live view: ${error.message}`, true);
    } finally {
      if (alive) timer = setTimeout(tick, POLL_LIVE_MS);
    }
  }
  const refilter = () => {
    wantedLine = lineFilter.value;
    setHashQuery("/live", [["line", wantedLine], ["flagged", onlyFlagged.checked ? "1" : ""]]);
    nodes.clear(); grid.replaceChildren(); clearTimeout(timer); tick();
  };
  onlyFlagged.addEventListener("change", refilter);
  lineFilter.addEventListener("change", refilter);
  tick();
  return () => { alive = false; clearTimeout(timer); };
}

function renderKpis(box, classes) {
  const total = classes.reduce((n, c) => n + c.total, 0);
  const flagged = classes.reduce((n, c) => n + c.flagged, 0);
  const kpi = (label, value, bad) => h("div", { class: "kpi" }, h("div", { class: "label", text: label }), h("div", { class: "value" + (bad ? " bad" : ""), text: value }));
  box.replaceChildren(
    kpi("frames inspected", String(total)),
    kpi("flagged", `${flagged}${total ? ` (${((100 * flagged) / total).toFixed(1)} %)` : ""}`, flagged > 0),
    h("table", { class: "classes" },
      h("thead", {}, h("tr", {}, h("th", { text: "class" }), h("th", { text: "frames" }), h("th", { text: "flagged" }), h("th", { text: "ms" }))),
      h("tbody", {}, classes.map((c) => h("tr", {},
        h("td", { text: c.product_class }), h("td", { text: c.total }), h("td", { text: c.flagged }),
        h("td", { text: Math.round(c.mean_latency_ms) }))))));
  const pill = document.getElementById("rate-pill");
  pill.textContent = `${total} frames · ${flagged} flagged`;
}

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function renderHistory() {
  const params = hashQuery();
  const field = (name, label, attrs = {}) => h("label", {}, label, h("input", { name, value: params.get(name) || "", ...attrs }));
  const anomalous = h("select", { name: "anomalous" },
    h("option", { value: "", text: "all" }), h("option", { value: "true", text: "flagged" }), h("option", { value: "false", text: "normal" }));
  anomalous.value = params.get("anomalous") || "";
  const form = h("form", { class: "filters panel", id: "filters" },
    field("line", "line"), field("camera", "camera"), field("class", "class"),
    h("label", {}, "verdict", anomalous),
    h("label", {}, "since", h("input", { name: "since", type: "datetime-local", value: localInput(params.get("since")) })),
    h("label", {}, "until", h("input", { name: "until", type: "datetime-local", value: localInput(params.get("until")) })),
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit", text: "Filter" }),
      h("button", { type: "button", class: "ghost", text: "Clear", onclick: () => { location.hash = "#/history"; } })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form).entries()) {
      if (!value) continue;
      query.set(key, key === "since" || key === "until" ? new Date(value).toISOString() : value);
    }
    location.hash = `#/history?${query}`;
  });
  const tbody = h("tbody");
  const more = h("button", { type: "button", text: "Load more", hidden: true });
  view.replaceChildren(h("h1", { text: "History" }), form,
    h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["", "id", "captured", "line", "camera", "class", "score / threshold", "verdict", "review", "bank"].map((t) => h("th", { text: t })))),
      tbody),
    h("div", { class: "row", style: "margin-top:12px" }, more));
  let cursor = null;
  async function load() {
    const query = new URLSearchParams(params);
    query.set("limit", "50");
    if (cursor) query.set("before_id", cursor);
    more.disabled = true;
    try {
      const page = await api(`/api/inspections?${query}`);
      for (const item of page.items) {
        tbody.append(h("tr", { class: "click", onclick: () => { location.hash = `#/inspection/${item.id}`; } },
          h("td", {}, thumb(item)), h("td", { class: "mono", text: item.id }), h("td", { text: clock(item.captured_at) }),
          h("td", { text: item.line_id }), h("td", { text: item.camera_id }), h("td", { text: item.product_class }),
          h("td", { class: "num mono", text: `${fmt(item.score)} / ${fmt(item.threshold)}` }),
          h("td", {}, flagBadge(item)), h("td", {}, reviewBadges(item)), h("td", { class: "mono", text: `v${item.bank_version}` })));
      }
      if (!tbody.children.length) tbody.append(h("tr", {}, h("td", { colspan: 10, class: "empty", text: "No inspection matches these filters." })));
      cursor = page.next_cursor;
      more.hidden = cursor === null;
    } catch (error) {
      toast(error.message, true);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", load);
  load();
  return () => {};
}

