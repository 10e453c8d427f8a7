"use strict";

// The page talks only to the public /v1 API; every error is shown from the JSON error body.
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function apiError(response) {
  try {
    const body = await response.json();
    return body.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// The API key typed into the Watches panel: a credential, so it lives in sessionStorage (this tab only) and
// travels in the Authorization header, never in localStorage or a URL. Every API call sends it when there is
// one, so the page also works when POSAPL_REQUIRE_KEY closes search.
const KEY_STORE = "posapl.apiKey";
const apiKey = () => sessionStorage.getItem(KEY_STORE) || "";

function keyHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// Every JSON POST the page sends: the body as JSON, with the key (if any); `accept` asks for another format.
function postJson(url, body, accept) {
  const headers = { "Content-Type": "application/json", ...(accept ? { Accept: accept } : {}) };
  return fetch(url, { method: "POST", headers: keyHeaders(headers), body: JSON.stringify(body) });
}

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

// What a score means depends on whether it was re-ranked: cosine similarity of the embeddings (-1…1), or a
// re-ranking method's own score (higher is better, on no fixed scale). Each score on the page says which.
function scoreLabel(method) {
  return method === "none"
    ? { short: "cos", long: "cosine similarity of query and image embeddings (−1 to 1, higher is closer)" }
    : { short: method, long: `${method} re-ranking score (higher is better; not a probability or a similarity)` };
}

function openLightbox(hit, method) {
  $("lightbox-image").src = hit.view_url || hit.image_url;  // view_url: a browser-displayable rendering (TIFF)
  const label = scoreLabel(method);
  $("lightbox-caption").textContent = `${hit.path} · ${hit.width}×${hit.height} · ${label.long}: ${hit.score.toFixed(3)}`;
  $("lightbox").hidden = false;
}

function closeLightbox() {
  $("lightbox").hidden = true;
  $("lightbox-image").removeAttribute("src");
}

// Ids are 63-bit integers, beyond a JavaScript number's exact range: take them from the URLs, never hit.id.
const idOf = (hit) => hit.image_url.split("/").pop();

function renderGrid(container, hits, method) {
  const label = scoreLabel(method);
  container.replaceChildren(
    ...hits.map((hit, i) => {
      const card = el(
        "figure",
        { class: "result-card", tabindex: "0", title: hit.path, "data-id": idOf(hit) },
        el("img", { src: hit.thumbnail_url, alt: hit.path, loading: "lazy" }),
        el("figcaption", {},
          el("span", { class: "rank", text: `#${i + 1}` }),
          el("span", { class: "score", title: label.long }, el("small", { text: label.short }), hit.score.toFixed(3))),
        el("span", { class: "path", text: hit.path }),
      );
      card.addEventListener("click", () => openLightbox(hit, method));
      card.addEventListener("keydown", (e) => { if (e.key === "Enter") openLightbox(hit, method); });
      decorateCard(card, hit);  // labels.js: 👍/👎, more like this, review keys
      return card;
    }),
  );
}

function renderPos(query, pos) {
  const words = query.split(" ");
  const box = $("pos-tags");
  if (words.length !== pos.length) {
    box.replaceChildren(...pos.map((tag) => el("span", { class: "pos-tag", text: tag })));
    return;
  }
  box.replaceChildren(...words.map((word, i) => el("span", { class: "pos-tag" }, word, el("small", { text: pos[i] }))));
}

// One date range, and a selector naming the time it filters: an item's acquisition time (ISO dates, the API's
// time_from/time_to) or its file's modification time (Unix seconds, min_mtime/max_mtime).
const TIME_FILTERS = {
  acquired: {
    "date-from": { field: "time_from", at: (day) => day },
    "date-to": { field: "time_to", at: (day) => day },  // a date alone includes its whole day
  },
  modified: {
    "date-from": { field: "min_mtime", at: (day) => new Date(`${day}T00:00:00`).getTime() / 1000 },
    "date-to": { field: "max_mtime", at: (day) => new Date(`${day}T23:59:59.999`).getTime() / 1000 },
  },
};

function timeFilters() {
  const filters = {};
  for (const [id, { field, at }] of Object.entries(TIME_FILTERS[$("time-kind").value])) {
    const day = $(id).value;
    if (day) filters[field] = at(day);
  }
  return filters;
}

let lastSearch = null;  // the body of the search whose results are shown, for "Export GeoJSON"

function searchBody() {
  const body = { query: $("query").value, k: Number($("k").value) };
  if ($("rerank").value) body.rerank = $("rerank").value;
  const filters = { ...timeFilters(), ...(window.posaplMap ? window.posaplMap.filters() : {}) };
  if (Object.keys(filters).length) body.filters = filters;
  return body;
}

async function searchText(event) {
  event.preventDefault();
  const body = searchBody();
  showError($("search-error"), "");
  $("search-meta").textContent = "searching…";
  $("export-geojson").hidden = true;
  lastSearch = null;
  const response = await postJson("/v1/search/text", body);
  if (!response.ok) {
    $("search-meta").textContent = "";
    $("pos-tags").replaceChildren();
    $("results").replaceChildren();
    showError($("search-error"), await apiError(response));
    return;
  }
  const data = await response.json();
  renderPos(data.normalized_query, data.pos);
  renderGrid($("results"), data.results, data.rerank);
  if (window.posaplMap) window.posaplMap.showResults(data.results);
  lastSearch = body;
  $("export-geojson").hidden = data.results.length === 0;
  const t = data.timings_ms;
  $("search-meta").textContent =
    `${data.results.length} images · index v${data.index_version} · scores: ${scoreLabel(data.rerank).long} · ` +
    `${t.total.toFixed(1)} ms (pos ${t.pos.toFixed(1)}, encode ${t.encode.toFixed(1)}, ` +
    `search ${t.search.toFixed(1)}, re-rank ${t.rerank.toFixed(1)})` +
    [data.rerank_note, data.dedupe_note].filter(Boolean).map((note) => ` · ${note}`).join("");
}

// The same search again, answered as GeoJSON (RFC 7946) by the API, saved through a temporary blob link.
async function exportGeojson() {
  if (!lastSearch) return;
  const response = await postJson("/v1/search/text", lastSearch, "application/geo+json");
  if (!response.ok) {
    showError($("search-error"), await apiError(response));
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: "posapl-results.geojson" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// A score bar's fill, sized through the CSSOM: the page's CSP refuses inline style attributes.
function barFill(fraction) {
  const fill = el("span");
  fill.style.width = `${Math.max(0, fraction) * 100}%`;
  return fill;
}

async function searchImage(file) {
  showError($("upload-error"), "");
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("k_captions", "5");
  form.append("k_images", "12");
  $("upload-meta").textContent = "searching…";
  const response = await fetch("/v1/search/image", { method: "POST", body: form, headers: keyHeaders() });
  if (!response.ok) {
    $("upload-result").hidden = true;
    $("similar-title").hidden = true;
    $("similar").replaceChildren();
    showError($("upload-error"), await apiError(response));
    return;
  }
  const data = await response.json();
  const preview = $("upload-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  // Browsers cannot show TIFF: show the server's rendering of what the model saw instead of the local file.
  const tiff = /tiff?$/i.test(file.type) || /\.tiff?$/i.test(file.name);
  preview.onerror = data.preview ? () => { preview.onerror = null; preview.src = data.preview; } : null;
  preview.src = tiff && data.preview ? data.preview : URL.createObjectURL(file);
  $("upload-meta").textContent =
    `${file.name} · ${data.width}×${data.height} · ${data.timings_ms.total.toFixed(1)} ms · index v${data.index_version}`;
  const best = Math.max(...data.captions.map((c) => c.score), 1e-6);
  const noCaptions = el("li", { class: "caption-text", text: "No captions: this index was built without a caption bank." });
  $("captions").replaceChildren(
    ...(data.captions.length ? [] : [noCaptions]),
    ...data.captions.map((c) =>
      el("li", {},
        el("span", { class: "caption-text", text: c.text }),
        el("span", { class: "caption-meta" },
          el("span", { class: "bar" }, barFill(c.score / best)),
          `${scoreLabel(data.rerank).short} ${c.score.toFixed(3)} · ${c.source}`))),
  );
  if (data.captions_note) $("captions").replaceChildren(el("li", { class: "caption-note", text: data.captions_note }));
  $("upload-result").hidden = false;
  $("similar-title").hidden = data.images.length === 0;
  renderGrid($("similar"), data.images, "none");
}

async function refreshStatus() {
  const badge = $("index-status");
  try {
    const response = await fetch("/v1/index");
    if (!response.ok) throw new Error(await apiError(response));
    const info = await response.json();
    badge.textContent = `index v${info.version} · ${info.images.toLocaleString()} images · ${info.captions.toLocaleString()} captions`;
    badge.classList.remove("down");
  } catch (err) {
    badge.textContent = `index unavailable: ${err.message}`;
    badge.classList.add("down");
  }
}

function setupDropzone() {
  const zone = $("dropzone");
  const input = $("upload-input");
  input.addEventListener("change", () => searchImage(input.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragover"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragover");
    if (e.dataTransfer.files.length) searchImage(e.dataTransfer.files[0]);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (e) => searchText(e).catch((err) => showError($("search-error"), String(err))));
  setupDropzone();
  $("export-geojson").addEventListener("click", () => exportGeojson().catch((err) => showError($("search-error"), String(err))));
  $("lightbox").addEventListener("click", (e) => { if (e.target.tagName !== "IMG") closeLightbox(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeLightbox(); });
  refreshStatus();
  setInterval(refreshStatus, 30000);
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) {
    $("query").value = initial;
    $("search-form").requestSubmit();
  }
});
