/* linesight dashboard router: #/lines (default), #/live, #/history, #/inspection/ID, #/dead-letters, #/banks. */
"use strict";

async function route() {
  stopView();
  stopView = () => {};
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/lines";
  const tab = path.split("/")[1] || "lines";
  document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab || (tab === "inspection" && a.dataset.tab === "history")));
  const detail = path.match(/^\/inspection\/(\d+)$/);
  if (detail) stopView = await renderDetail(detail[1]);
  else if (tab === "live") stopView = renderLive();
  else if (tab === "history") stopView = renderHistory();
  else if (tab === "dead-letters") stopView = renderDeadLetters();
  else if (tab === "banks") stopView = renderBanks();
  else stopView = renderLines();
}
window.addEventListener("hashchange", route);
showTokenState();
refreshHealth();
setInterval(refreshHealth, POLL_HEALTH_MS);
route();
