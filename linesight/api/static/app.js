/* linesight dashboard: vanilla JS, hash routes #/live, #/history, #/inspection/ID, #/banks. */
"use strict";

const POLL_LIVE_MS = 2000;
const POLL_HEALTH_MS = 10000;
const TOKEN_KEY = "linesight.token";
const view = document.getElementById("view");
let stopView = () => {};

/* ---------- small helpers ---------- */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
const fmt = (x, d = 3) => (typeof x === "number" ? x.toFixed(d) : "–");
function ago(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
const clock = (iso) => new Date(iso).toLocaleString();
function toast(message, isError = false) {
  const box = document.getElementById("toast");
  const msg = h("div", { class: "msg" + (isError ? " error" : ""), text: message });
  box.append(msg);
  setTimeout(() => msg.remove(), isError ? 9000 : 5000);
}

/* ---------- API ---------- */
async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}
const getToken = () => sessionStorage.getItem(TOKEN_KEY);
function showTokenState() {
  document.getElementById("token-button").textContent = getToken() ? "token: set" : "token: none";
}
function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.removeEventListener("close", onClose);
      resolve(value);
    };
    const onClose = () => {
      if (dialog.returnValue === "ok" && input.value.trim()) {
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        showTokenState();
        done(input.value.trim());
      } else done(null);
    };
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    dialog.showModal();
  });
}
document.getElementById("token-cancel").addEventListener("click", () => document.getElementById("token-dialog").close("cancel"));
document.getElementById("token-button").addEventListener("click", () => askToken());

/* A write: asks for the token once, and again if the server refuses it. */
async function write(path, options = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const token = getToken() || (await askToken());
    if (!token) throw new Error("an API token is needed for this action");
    try {
      return await api(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` } });
    } catch (error) {
      if (error.status !== 401) throw error;
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
      toast(error.message, true);
    }
  }
  throw new Error("the API token was refused");
}

/* ---------- header: health and counts ---------- */
async function refreshHealth() {
  const pill = document.getElementById("health-pill");
  try {
    const response = await fetch("/healthz");
    const body = await response.json();
    const parts = Object.entries(body.parts || {});
    pill.textContent = response.ok ? "healthy" : "degraded: " + parts.filter(([, p]) => !["ok", "skipped"].includes(p.status)).map(([n]) => n).join(", ");
    pill.className = "pill " + (response.ok ? "ok" : "bad");
    pill.title = parts.map(([name, p]) => `${name}: ${p.status}${p.detail ? " – " + p.detail : ""}`).join("\n");
  } catch (error) {
    pill.textContent = "API unreachable";
    pill.className = "pill bad";
  }
}

/* ---------- cards and rows ---------- */
const thumb = (item) => h("img", { src: item.links.overlay, alt: `overlay of inspection ${item.id}`, loading: "lazy" });
const flagBadge = (item) => h("span", { class: "badge " + (item.is_anomalous ? "bad" : "ok"), text: item.is_anomalous ? "flagged" : "ok" });
function card(item) {
  return h("a", { class: "card" + (item.is_anomalous ? " flagged" : ""), href: `#/inspection/${item.id}`, "data-id": item.id },
    thumb(item),
    h("div", { class: "meta" },
      h("div", { class: "top" }, h("span", { text: item.product_class }), flagBadge(item)),
      h("div", { class: "mono" }, `${fmt(item.score)} / ${fmt(item.threshold)}`),
      h("div", { class: "muted" }, `${item.line_id} · ${item.camera_id} · ${ago(item.captured_at)}`)));
}

/* ---------- views ---------- */
function renderLive() {
  const grid = h("div", { class: "grid", id: "live-grid" });
  const onlyFlagged = h("input", { type: "checkbox", id: "only-flagged" });
  const kpis = h("div", { class: "kpis" });
  view.replaceChildren(
    h("div", { class: "layout" },
      h("aside", { class: "panel" }, h("h2", { text: "Last hour" }), kpis),
      h("section", {},
        h("h1", {}, "Latest inspections", h("label", { class: "row" }, onlyFlagged, "flagged only")),
        grid)));
  const nodes = new Map();
  let newestId = null;
  let timer = null;
  let alive = true;
  async function tick() {
    try {
      const query = new URLSearchParams({ limit: "24" });
      if (onlyFlagged.checked) query.set("anomalous", "true");
      const [page, summary] = await Promise.all([
        api(`/api/inspections?${query}`),
        api(`/api/summary?since=${encodeURIComponent(new Date(Date.now() - 3600e3).toISOString())}`),
      ]);
      if (!alive) return;
      const items = page.items;
      const children = items.map((item) => {
        let node = nodes.get(item.id);
        if (!node) {
          node = card(item);
          if (newestId !== null && item.id > newestId) node.classList.add("new");
          nodes.set(item.id, node);
        } else {
          node.querySelector(".muted").textContent = `${item.line_id} · ${item.camera_id} · ${ago(item.captured_at)}`;
        }
        return node;
      });
      grid.replaceChildren(...(children.length ? children : [h("div", { class: "empty", text: "No inspections yet: waiting for frames…" })]));
      newestId = items.length ? Math.max(newestId || 0, items[0].id) : newestId;
      renderKpis(kpis, summary.classes);
    } catch (error) {
      if (alive) toast(`live view: ${error.message}`, true);
    } finally {
      if (alive) timer = setTimeout(tick, POLL_LIVE_MS);
    }
  }
  onlyFlagged.addEventListener("change", () => { nodes.clear(); grid.replaceChildren(); clearTimeout(timer); tick(); });
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

function historyQuery() {
  const hash = location.hash.split("?")[1] || "";
  return new URLSearchParams(hash);
}
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function renderHistory() {
  const params = historyQuery();
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
      h("thead", {}, h("tr", {}, ["", "id", "captured", "line", "camera", "class", "score / threshold", "verdict", "bank"].map((t) => h("th", { text: t })))),
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
          h("td", {}, flagBadge(item)), h("td", { class: "mono", text: `v${item.bank_version}` })));
      }
      if (!tbody.children.length) tbody.append(h("tr", {}, h("td", { colspan: 9, class: "empty", text: "No inspection matches these filters." })));
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

async function renderDetail(id) {
  view.replaceChildren(h("div", { class: "empty", text: `Loading inspection ${id}…` }));
  let item;
  try {
    item = await api(`/api/inspections/${encodeURIComponent(id)}`);
  } catch (error) {
    view.replaceChildren(h("div", { class: "empty", text: error.message }));
    return () => {};
  }
  const pct = (x) => Math.min(100, (100 * x) / Math.max(item.threshold * 2, item.score, 1e-9));
  const turns = h("div", { class: "turns", id: "turns" });
  const question = h("input", { name: "question", placeholder: "Ask about this frame, e.g. “where is the defect?”", maxlength: 2000, autocomplete: "off" });
  const send = h("button", { class: "primary", type: "submit", text: "Ask" });
  const chatForm = h("form", {}, question, send);
  const hint = h("div", { class: "muted", text: "No questions yet. Answers come from the stored result of this frame." });
  turns.append(hint);
  const showTurn = (t) => {
    hint.remove();
    turns.append(h("div", { class: `turn ${t.role}`, text: t.text, title: clock(t.created_at) }));
  };
  chatForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    send.disabled = true;
    try {
      const reply = await write(`/api/inspections/${item.id}/chat`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ question: text }),
      });
      reply.turns.forEach(showTurn);
      question.value = "";
      turns.scrollTop = turns.scrollHeight;
    } catch (error) {
      toast(error.message, true);
    } finally {
      send.disabled = false;
    }
  });
  view.replaceChildren(
    h("h1", {}, h("a", { href: "#/history", text: "← History" }), `Inspection ${item.id}`, flagBadge(item)),
    h("div", { class: "detail" },
      h("section", { class: "panel pictures" },
        h("figure", {}, h("img", { src: item.links.overlay, alt: "overlay", id: "overlay-image" }), h("figcaption", { text: "frame with the anomaly map; the mask is outlined in red" })),
        h("figure", {}, h("img", { src: item.links.mask, alt: "mask", id: "mask-image" }), h("figcaption", { text: "mask" }))),
      h("section", { class: "panel" },
        h("div", { class: "verdict", id: "verdict", text: item.verdict }),
        h("div", { class: "scorebar", title: `score ${fmt(item.score)}, threshold ${fmt(item.threshold)}` },
          h("div", { class: "fill" + (item.is_anomalous ? " bad" : ""), style: `width:${pct(item.score)}%` }),
          h("div", { class: "mark", style: `left:${pct(item.threshold)}%` })),
        h("div", { class: "muted", text: `score ${fmt(item.score)} vs calibrated threshold ${fmt(item.threshold)}` }),
        h("dl", { class: "facts" },
          ...[["class", `${item.product_class} (bank v${item.bank_version})`],
            ["where", item.positions.length ? `${item.positions.join(", ")} (${item.region_count} region${item.region_count === 1 ? "" : "s"})` : "–"],
            ["line / camera", `${item.line_id} / ${item.camera_id}`],
            ["captured", clock(item.captured_at)],
            ["latency", `${Math.round(item.latency_ms)} ms`],
            ["verdict by", item.verdict_source + (item.verdict_note ? ` (${item.verdict_note})` : "")],
            ["frame", item.frame_id],
            ["alert", item.alert_sent_at ? clock(item.alert_sent_at) : "–"],
          ].flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
        h("div", { class: "chat" }, h("h2", { text: "Ask about this frame" }), turns, chatForm))));
  try {
    (await api(`/api/inspections/${item.id}/chat`)).turns.forEach(showTurn);
  } catch (error) {
    toast(error.message, true);
  }
  return () => {};
}

function renderBanks() {
  const tbody = h("tbody");
  const classInput = h("input", { name: "class", required: true, pattern: "[A-Za-z0-9._:\\-]{1,64}", placeholder: "e.g. brick" });
  const files = h("input", { name: "images", type: "file", multiple: true, accept: "image/png,image/jpeg", required: true });
  const activate = h("input", { name: "activate", type: "checkbox", checked: true });
  const rotations = h("input", { name: "rotations", type: "checkbox", checked: true });
  const submit = h("button", { class: "primary", type: "submit", text: "Build bank" });
  const form = h("form", { class: "panel", id: "bank-form" },
    h("h2", { text: "New version from normal images" }),
    h("p", { class: "muted", text: "A few good images are enough; the threshold is calibrated from them (no manual threshold)." }),
    h("div", { style: "display:grid;gap:10px" },
      h("label", {}, "product class", classInput), h("label", {}, "normal images (PNG/JPEG)", files),
      h("label", { class: "row" }, activate, "activate at once (hot swap)"),
      h("label", { class: "row" }, rotations, "add rotations (round parts, textures)"),
      h("div", { class: "row end" }, submit)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData();
    for (const file of files.files) body.append("images", file);
    body.append("activate", activate.checked ? "true" : "false");
    body.append("rotations", rotations.checked ? "true" : "false");
    submit.disabled = true;
    submit.textContent = "Building…";
    try {
      const result = await write(`/api/banks/${encodeURIComponent(classInput.value.trim())}`, { method: "POST", body });
      toast(result.message);
      form.reset();
      load();
    } catch (error) {
      toast(error.message, true);
    } finally {
      submit.disabled = false;
      submit.textContent = "Build bank";
    }
  });
  view.replaceChildren(h("h1", { text: "Memory banks" }),
    h("div", { class: "banks" },
      h("section", { class: "panel" },
        h("table", { class: "list" },
          h("thead", {}, h("tr", {}, ["class", "version", "shots", "threshold", "encoder", "created", ""].map((t) => h("th", { text: t })))),
          tbody)),
      form));
  async function load() {
    try {
      const { banks } = await api("/api/banks");
      tbody.replaceChildren(...banks.map((bank) => h("tr", {},
        h("td", { text: bank.product_class }), h("td", { class: "mono", text: `v${bank.version}` }),
        h("td", { class: "num", text: bank.shots }),
        h("td", { class: "num mono", text: fmt(bank.calibration.threshold) }),
        h("td", { text: bank.encoder }), h("td", { text: clock(bank.created_at) }),
        h("td", {}, bank.active ? h("span", { class: "badge active", text: "active" })
          : h("button", { type: "button", text: "Activate", onclick: async (event) => {
            event.target.disabled = true;
            try {
              const result = await write(`/api/banks/${encodeURIComponent(bank.product_class)}/${bank.version}/activate`, { method: "POST" });
              toast(result.message);
              load();
            } catch (error) {
              toast(error.message, true);
              event.target.disabled = false;
            }
          } })))));
      if (!banks.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "empty", text: "No bank yet: build one from normal images." })));
    } catch (error) {
      toast(error.message, true);
    }
  }
  load();
  return () => {};
}

/* ---------- router ---------- */
async function route() {
  stopView();
  stopView = () => {};
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/live";
  const tab = path.split("/")[1] || "live";
  document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab || (tab === "inspection" && a.dataset.tab === "history")));
  const detail = path.match(/^\/inspection\/(\d+)$/);
  if (detail) stopView = await renderDetail(detail[1]);
  else if (tab === "history") stopView = renderHistory();
  else if (tab === "banks") stopView = renderBanks();
  else stopView = renderLive();
}
window.addEventListener("hashchange", route);
showTokenState();
refreshHealth();
setInterval(refreshHealth, POLL_HEALTH_MS);
route();
