"use strict";

// Watches: "Save as a watch" stores the search on the page (text, labelled examples, method, filters and the
// detect threshold) as a saved search, POST /v1/searches; every index update then matches its new items. The
// list shows the API key's saved searches, each with the number of matches found since this browser last
// opened it; opening one shows those matches in the grid and on the map. Loaded after detect.js: it uses
// detectBody(), showHits() and app.js's $, el, apiError, showError, apiKey, keyHeaders and postJson.
//
// The API key field sets app.js's key (sessionStorage). What was seen is not a secret and should outlive the
// tab: per search, the found_at of the newest match opened, in localStorage, sent back as `since`.
const SEEN_STORE = "posapl.watchesSeen";
const MATCH_PAGE = 1000;  // the API's most matches per call
let listing = 0;  // the latest list refresh: an older one still in flight must not overwrite its counts

function seenMarks() {
  try {
    return JSON.parse(localStorage.getItem(SEEN_STORE)) || {};
  } catch {
    return {};
  }
}

function markSeen(searchId, foundAt) {
  const marks = seenMarks();
  if (foundAt === null) delete marks[searchId];
  else marks[searchId] = foundAt;
  localStorage.setItem(SEEN_STORE, JSON.stringify(marks));
}

// A saved search's matches, oldest first, and the items still in the live version; `since`: found after it.
async function matchesOf(searchId, since) {
  const params = new URLSearchParams(since ? { since } : {});
  const response = await fetch(`/v1/searches/${searchId}/matches?${params}`, { headers: keyHeaders() });
  if (!response.ok) throw new Error(await apiError(response));
  return response.json();
}

// A saved search needs a score: "as good as result #N" is resolved by the detection the page would draw.
async function watchThreshold(detect) {
  if ("score" in detect.threshold) return detect.threshold.score;
  const response = await postJson("/v1/detect", detect);
  if (!response.ok) throw new Error(await apiError(response));
  const score = (await response.json()).threshold.score;
  if (score === null) throw new Error("no item passes these filters yet: choose a score threshold instead of a rank");
  return score;
}

async function saveWatch(event) {
  event.preventDefault();
  showError($("watch-error"), "");
  const detect = detectBody();
  const threshold = await watchThreshold(detect);
  const body = { ...detect, name: $("watch-name").value.trim(), threshold };
  const response = await postJson("/v1/searches", body);
  if (!response.ok) {
    showError($("watch-error"), await apiError(response));
    return;
  }
  const saved = await response.json();
  $("watch-name").value = "";
  $("watch-meta").textContent =
    `Saved “${saved.name}”: new items scoring ≥ ${saved.threshold.toFixed(3)} are matched at each index update.`;
  await refreshWatches();
}

function describe(search) {
  const parts = [search.method, `score ≥ ${search.threshold.toFixed(3)}`];
  if (search.query) parts.push(`“${search.query}”`);
  parts.push(`${search.positive_ids.length} relevant · ${search.negative_ids.length} not relevant`);
  const filtered = Object.keys(search.filters || {});
  if (filtered.length) parts.push(`filters: ${filtered.join(", ")}`);
  if (search.missing_labels.length) parts.push(`${search.missing_labels.length} labelled items left the archive`);
  return parts.join(" · ");
}

function watchItem(search, fresh) {
  const open = el("button", { type: "button", class: "watch-open", title: "Show its matches", text: search.name });
  const count = fresh === null ? "?" : `${fresh}${fresh >= MATCH_PAGE ? "+" : ""} new`;
  const remove = el("button", {
    type: "button", class: "secondary watch-delete", "aria-label": `Delete watch ${search.name}`, text: "Delete",
  });
  open.addEventListener("click", () => openWatch(search).catch(report));
  remove.addEventListener("click", () => deleteWatch(search).catch(report));
  return el("li", { class: "watch", "data-id": String(search.id) },
    open,
    el("span", { class: `watch-count${fresh ? " fresh" : ""}`, text: count }),
    el("span", { class: "meta", text: describe(search) }),
    remove);
}

async function refreshWatches() {
  const turn = ++listing;
  showError($("watch-error"), "");
  if (!apiKey()) {
    $("watch-list").replaceChildren(el("li", { class: "meta", text: "Enter an API key to save watches and see yours." }));
    return;
  }
  const response = await fetch("/v1/searches", { headers: keyHeaders() });
  if (!response.ok) {
    const message = await apiError(response);
    if (turn !== listing) return;
    $("watch-list").replaceChildren();
    showError($("watch-error"), message);
    return;
  }
  const { searches } = await response.json();
  const marks = seenMarks();
  const fresh = await Promise.all(
    searches.map((s) => matchesOf(s.id, marks[s.id]).then((data) => data.matches.length, () => null)));
  if (turn !== listing) return;
  const none = el("li", { class: "meta", text: "No watches yet." });
  $("watch-list").replaceChildren(...(searches.length ? searches.map((s, i) => watchItem(s, fresh[i])) : [none]));
}

// The matches found since the last visit (all of them when there are none new), then marked seen.
async function openWatch(search) {
  showError($("watch-error"), "");
  const since = seenMarks()[search.id];
  let data = await matchesOf(search.id, since);
  const fresh = data.matches.length;
  if (fresh) markSeen(search.id, data.matches[fresh - 1].found_at);
  else if (since) data = await matchesOf(search.id, null);
  const what = fresh ? `${fresh} new matches` : `no new matches; its ${data.matches.length} earlier matches`;
  showHits(data.items, `Watch “${search.name}”: ${what} · ${data.items.length} still in the archive`);
  await refreshWatches();
}

async function deleteWatch(search) {
  showError($("watch-error"), "");
  const response = await fetch(`/v1/searches/${search.id}`, { method: "DELETE", headers: keyHeaders() });
  if (!response.ok) {
    showError($("watch-error"), await apiError(response));
    return;
  }
  markSeen(search.id, null);
  $("watch-meta").textContent = `Deleted “${search.name}”.`;
  await refreshWatches();
}

function report(err) {
  showError($("watch-error"), err instanceof Error ? err.message : String(err));
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", () => {
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    refreshWatches().catch(report);
  });
  $("watch-form").addEventListener("submit", (e) => saveWatch(e).catch(report));
  $("refresh-watches").addEventListener("click", () => refreshWatches().catch(report));
  refreshWatches().catch(report);
  setInterval(() => { if (apiKey()) refreshWatches().catch(report); }, 30000);
});
