/* linesight dashboard, shared part: DOM helper, formatting, API calls with the token, health pill.
   Loaded first; the views (lines.js, live.js, detail.js, banks.js) and the router (app.js) follow. */
"use strict";

const POLL_LIVE_MS = 2000;
const POLL_LINES_MS = 5000;
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
  for (const child of children.flat(Infinity)) {
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


/* ---------- hash query (#/view?key=value) ---------- */
const hashQuery = () => new URLSearchParams(location.hash.split("?")[1] || "");
function setHashQuery(path, params) {
  const query = new URLSearchParams([...params].filter(([, value]) => value));
  history.replaceState(null, "", `#${path}${query.toString() ? "?" + query : ""}`);
}
const pct = (x, d = 1) => (typeof x === "number" ? `${(100 * x).toFixed(d)} %` : "–");

/* ---------- operator review: acknowledge, false alarm, confirmed defect ---------- */
const LABEL_TEXT = { false_alarm: "false alarm", defect: "defect" };
function reviewBadges(item) {
  return [
    item.feedback && h("span", { class: `badge label-${item.feedback.label}`, "data-label": item.feedback.label,
      title: `${item.feedback.actor}, ${clock(item.feedback.created_at)}${item.feedback.note ? ": " + item.feedback.note : ""}`,
      text: LABEL_TEXT[item.feedback.label] || item.feedback.label }),
    item.acknowledgement && h("span", { class: "badge acked", title: `${item.acknowledgement.acknowledged_by}, ${clock(item.acknowledgement.acknowledged_at)}`, text: "ack" }),
  ];
}
/* Buttons that POST the review and hand the updated inspection to onDone(item). */
function reviewButtons(item, onDone, noteInput = null, compact = false) {
  const send = async (event, path, body) => {
    event.preventDefault();
    event.stopPropagation();
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const updated = await write(`/api/inspections/${item.id}/${path}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      toast(path === "ack" ? `inspection ${item.id} acknowledged` : `inspection ${item.id} marked ${LABEL_TEXT[body.label]}`);
      onDone(updated);
    } catch (error) {
      toast(error.message, true);
    } finally {
      button.disabled = false;
    }
  };
  const note = () => (noteInput && noteInput.value.trim()) || null;
  const current = item.feedback && item.feedback.label;
  return h("div", { class: "review" + (compact ? " compact" : ""), role: "group", "aria-label": "operator review" },
    item.is_anomalous && h("button", { type: "button", class: "ack", disabled: !!item.acknowledgement, text: item.acknowledgement ? (compact ? "Acked" : "Acknowledged") : (compact ? "Ack" : "Acknowledge"),
      onclick: (e) => send(e, "ack", {}) }),
    item.is_anomalous && h("button", { type: "button", class: "false-alarm" + (current === "false_alarm" ? " on" : ""), text: "False alarm",
      title: "the frame is fine: it joins the class's normal references at the next bank rebuild", onclick: (e) => send(e, "feedback", { label: "false_alarm", note: note() }) }),
    h("button", { type: "button", class: "defect" + (current === "defect" ? " on" : ""), text: compact ? "Defect" : item.is_anomalous ? "Confirmed defect" : "Missed defect",
      onclick: (e) => send(e, "feedback", { label: "defect", note: note() }) }));
}
