/* Detail view (#/inspection/ID): the original frame with a heat toggle and region boxes, review buttons, chat. */
"use strict";

/* The frame as the camera sent it, the heat above the threshold on top, the mask's regions boxed. */
function framePanel(item) {
  const heat = h("img", { src: item.links.heat, alt: "", class: "heat", id: "heat-image" });
  const boxes = svg("svg", { id: "region-boxes", class: "boxes", viewBox: "0 0 1 1", preserveAspectRatio: "none", "aria-hidden": "true" });
  const frame = h("img", { src: item.links.frame, alt: `frame ${item.frame_id}`, id: "frame-image" });
  const caption = h("figcaption", { text: "the frame as received; heat only where the map is above the class threshold (yellow) up to twice it (red)" });
  frame.addEventListener("error", () => {  // the stream did not keep this frame: show the rendered overlay
    frame.src = item.links.overlay;
    heat.hidden = true;
    caption.textContent = "no stored frame: the rendered overlay is shown";
  }, { once: true });
  const toggle = (id, label, target) => {
    const input = h("input", { type: "checkbox", id, checked: true });
    input.addEventListener("change", () => { target.style.visibility = input.checked ? "visible" : "hidden"; });
    return h("label", { class: "row" }, input, label);
  };
  api(`${item.links.self}/regions`).then((body) => {
    body.regions.forEach((r, i) => boxes.append(svg("rect", { x: r.x, y: r.y, width: r.w, height: r.h, class: "region", "vector-effect": "non-scaling-stroke" },
      svg("title", {}, document.createTextNode(`region ${i + 1}: ${r.area_px} px of the map (${pct(r.area_share, 2)} of the frame)`)))));
    document.getElementById("region-count")?.replaceChildren(`${body.regions.length} region${body.regions.length === 1 ? "" : "s"}`);
  }).catch((error) => toast(`regions: ${error.message}`, true));
  return h("figure", { class: "main" },
    h("div", { class: "stage" }, frame, heat, boxes),
    h("div", { class: "row toggles" }, toggle("toggle-heat", "heat", heat), toggle("toggle-boxes", "region boxes", boxes),
      h("span", { class: "muted", id: "region-count" })),
    caption);
}

function reviewPanel(item) {
  const box = h("div", { class: "review-panel", id: "review" });
  const note = h("input", { id: "review-note", placeholder: "note (optional), e.g. glare on the rim", maxlength: 2000 });
  const draw = (current) => {
    const state = current.feedback
      ? `${LABEL_TEXT[current.feedback.label]} (${current.feedback.actor}, ${ago(current.feedback.created_at)})${current.feedback.note ? ": " + current.feedback.note : ""}`
      : "not reviewed";
    box.replaceChildren(...[
      h("h2", { text: "Operator review" }),
      h("div", { class: "row" }, reviewBadges(current), h("span", { id: "review-state", "data-label": current.feedback ? current.feedback.label : "", text: state })),
      current.acknowledgement && h("div", { class: "muted", text: `acknowledged by ${current.acknowledgement.acknowledged_by}, ${clock(current.acknowledgement.acknowledged_at)}` }),
      h("div", { class: "row" }, note, reviewButtons(current, draw, note)),
    ].filter(Boolean));
  };
  draw(item);
  return box;
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
  const pct100 = (x) => Math.min(100, (100 * x) / Math.max(item.threshold * 2, item.score, 1e-9));
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
      h("section", { class: "panel pictures" }, framePanel(item),
        h("div", { class: "side" },
          h("figure", {}, h("img", { src: item.links.overlay, alt: "rendered overlay", id: "overlay-image" }), h("figcaption", { text: "rendered overlay (heat above the threshold, mask in red)" })),
          h("figure", {}, h("img", { src: item.links.mask, alt: "mask", id: "mask-image" }), h("figcaption", { text: "mask" })))),
      h("section", { class: "panel" },
        h("div", { class: "verdict", id: "verdict", text: item.verdict }),
        h("div", { class: "scorebar", title: `score ${fmt(item.score)}, threshold ${fmt(item.threshold)}` },
          h("div", { class: "fill" + (item.is_anomalous ? " bad" : ""), style: `width:${pct100(item.score)}%` }),
          h("div", { class: "mark", style: `left:${pct100(item.threshold)}%` })),
        h("div", { class: "muted", text: `score ${fmt(item.score)} vs calibrated threshold ${fmt(item.threshold)}` }),
        reviewPanel(item),
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

