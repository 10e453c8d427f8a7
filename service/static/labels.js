"use strict";

// Labelling results for relevance feedback: Yes/No (👍/👎) on every card, a tray of the labelled items, "search again
// with these" (POST /v1/search/feedback) and "more like this" (GET /v1/items/{id}/similar). Keys on a focused
// card: j/k (or →/←) move, y/n label relevant / not relevant, u clears its label, m shows more like it.
// Loaded after app.js: it uses that script's $, el, apiError, showError, keyHeaders, postJson, renderGrid and
// searchBody.
const labelled = new Map();  // id (decimal string) -> { hit, label: "pos" | "neg" }

function feedbackInputs() {
  const body = {};
  const query = $("query").value.trim();
  if (query) body.query = query;
  body.positive_ids = [...labelled].filter(([, v]) => v.label === "pos").map(([id]) => id);
  body.negative_ids = [...labelled].filter(([, v]) => v.label === "neg").map(([id]) => id);
  const filters = searchBody().filters;
  if (filters) body.filters = filters;
  return body;
}

function markCard(card) {
  const entry = labelled.get(card.dataset.id);
  card.classList.toggle("labelled-pos", entry?.label === "pos");
  card.classList.toggle("labelled-neg", entry?.label === "neg");
  for (const button of card.querySelectorAll(".label-bar button[data-label]")) {
    button.setAttribute("aria-pressed", String(entry?.label === button.dataset.label));
  }
}

function renderTray() {
  const tray = $("label-tray");
  const items = [...labelled].map(([id, { hit, label }]) => {
    const remove = el("button", { type: "button", class: "tray-remove", "aria-label": `Remove label of ${hit.path}`, text: "×" });
    remove.addEventListener("click", () => setLabel(id, hit, null));
    return el("li", { class: `tray-item ${label}`, "data-id": id, title: hit.path },
      el("img", { src: hit.thumbnail_url, alt: hit.path }),
      el("span", { class: "tray-mark", text: label === "pos" ? "✓" : "✗" }),
      remove);
  });
  tray.replaceChildren(...items);
  const positives = [...labelled.values()].filter((v) => v.label === "pos").length;
  $("label-count").textContent = `${positives} relevant · ${labelled.size - positives} not relevant`;
  $("refine").disabled = positives === 0 && !$("query").value.trim();
  $("detect").disabled = $("refine").disabled;
}

function setLabel(id, hit, label) {
  if (label === null || labelled.get(id)?.label === label) labelled.delete(id);
  else labelled.set(id, { hit, label });
  for (const card of document.querySelectorAll(`.result-card[data-id="${CSS.escape(id)}"]`)) markCard(card);
  renderTray();
}

// Called by renderGrid for every card: the label buttons and "more like this".
function decorateCard(card, hit) {
  const id = card.dataset.id;
  const button = (text, title, action, extra = {}) => {
    const b = el("button", { type: "button", title, "aria-label": title, text, ...extra });
    b.addEventListener("click", (e) => { e.stopPropagation(); action(); });
    b.addEventListener("keydown", (e) => e.stopPropagation());
    return b;
  };
  card.append(el("div", { class: "label-bar" },
    button("✓ Yes", "Relevant (y)", () => setLabel(id, hit, "pos"), { "data-label": "pos", "aria-pressed": "false" }),
    button("✗ No", "Not relevant (n)", () => setLabel(id, hit, "neg"), { "data-label": "neg", "aria-pressed": "false" }),
    button("More like this", "More like this (m)", () => moreLikeThis(id, hit), { class: "more" })));
  card.addEventListener("keydown", (e) => cardKey(e, card, id, hit));
  markCard(card);
}

function cardKey(event, card, id, hit) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const cards = [...card.parentElement.querySelectorAll(".result-card")];
  const at = cards.indexOf(card);
  const move = { j: 1, ArrowRight: 1, k: -1, ArrowLeft: -1 }[event.key];
  if (move) cards[Math.min(cards.length - 1, Math.max(0, at + move))].focus();
  else if (event.key === "y") setLabel(id, hit, "pos");
  else if (event.key === "n") setLabel(id, hit, "neg");
  else if (event.key === "u") setLabel(id, hit, null);
  else if (event.key === "m") moreLikeThis(id, hit);
  else return;
  event.preventDefault();
}

function showHits(hits, meta) {
  renderGrid($("results"), hits, "none");
  if (window.posaplMap) window.posaplMap.showResults(hits);
  $("search-meta").textContent = meta;
  const first = $("results").querySelector(".result-card");
  if (first) first.focus();
}

async function refine() {
  showError($("search-error"), "");
  const body = { ...feedbackInputs(), k: Number($("k").value), method: $("feedback-method").value };
  const response = await postJson("/v1/search/feedback", body);
  if (!response.ok) {
    showError($("search-error"), await apiError(response));
    return;
  }
  const data = await response.json();
  showHits(data.results,
    `${data.results.length} images from ${body.positive_ids.length} relevant and ${body.negative_ids.length} ` +
    `not relevant examples (${data.method}) · index v${data.index_version} · labelled items are left out` +
    (data.note ? ` · ${data.note}` : ""));
}

async function moreLikeThis(id, hit) {
  showError($("search-error"), "");
  const params = new URLSearchParams({ k: $("k").value });
  const bbox = window.posaplMap ? window.posaplMap.filters().bbox : null;
  if (bbox) params.set("bbox", bbox.join(","));
  const response = await fetch(`/v1/items/${encodeURIComponent(id)}/similar?${params}`, { headers: keyHeaders() });
  if (!response.ok) {
    showError($("search-error"), await apiError(response));
    return;
  }
  const data = await response.json();
  showHits(data.results, `${data.results.length} images most like ${hit.path} · index v${data.index_version}`);
}

document.addEventListener("DOMContentLoaded", () => {
  const report = (err) => showError($("search-error"), String(err));
  $("refine").addEventListener("click", () => refine().catch(report));
  $("clear-labels").addEventListener("click", () => {
    labelled.clear();
    document.querySelectorAll(".result-card").forEach(markCard);
    renderTray();
  });
  $("query").addEventListener("input", renderTray);
  renderTray();
});
