/* Memory banks (#/banks): list, activate a version, build one from normal images. */
"use strict";

/* How a version decides: bank-time, refined from the stream (self-calibration) or an operator's override. */
function calibrationText(calibration) {
  const method = calibration.method || "balanced-accuracy-midpoint";
  const source = calibration.source_version;
  return source === null || source === undefined ? method : `${method} (from v${source})`;
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
          h("thead", {}, h("tr", {}, ["class", "version", "shots", "threshold", "calibration", "encoder", "created", ""].map((t) => h("th", { text: t })))),
          tbody)),
      form));
  async function load() {
    try {
      const { banks } = await api("/api/banks");
      tbody.replaceChildren(...banks.map((bank) => h("tr", {},
        h("td", { text: bank.product_class }), h("td", { class: "mono", text: `v${bank.version}` }),
        h("td", { class: "num", text: bank.shots }),
        h("td", { class: "num mono", text: fmt(bank.calibration.threshold) }),
        h("td", { class: "mono", text: calibrationText(bank.calibration) }),
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
      if (!banks.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "empty", text: "No bank yet: build one from normal images." })));
    } catch (error) {
      toast(error.message, true);
    }
  }
  load();
  return () => {};
}

