"use strict";

// Detection from the labelled examples: a threshold (the score of the N-th best item, or a raw score) runs
// POST /v1/detect, the dissolved areas are drawn on the map, and the same detection can be exported as
// GeoJSON or GeoParquet. Loaded after labels.js: it uses feedbackInputs() and app.js's helpers.
let lastDetect = null;  // the body of the detection shown, for the exports

function detectBody() {
  const value = Number($("detect-value").value);
  const threshold = $("detect-kind").value === "rank" ? { rank: value } : { score: value };
  return { ...feedbackInputs(), method: $("feedback-method").value, threshold };
}

async function runDetect() {
  showError($("detect-error"), "");
  const body = detectBody();
  $("detect-meta").textContent = "detecting…";
  const response = await postJson("/v1/detect", body);
  if (!response.ok) {
    $("detect-meta").textContent = "";
    showError($("detect-error"), await apiError(response));
    return;
  }
  const data = await response.json();
  lastDetect = body;
  if (window.posaplMap) window.posaplMap.showDetections(data.polygons);
  const score = data.threshold.score === null ? "—" : data.threshold.score.toFixed(3);
  $("detect-meta").textContent =
    `${data.count} tiles at score ≥ ${score} in ${data.polygons.length} areas · ${data.timings_ms.total.toFixed(0)} ms` +
    (data.note ? ` · ${data.note}` : "");
  $("detect-exports").hidden = false;
}

async function exportDetections(format, extension) {
  if (!lastDetect) return;
  const params = new URLSearchParams({ format, layer: "polygons" });
  const response = await postJson(`/v1/detect?${params}`, lastDetect);
  if (!response.ok) {
    showError($("detect-error"), await apiError(response));
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: `posapl-detections.${extension}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

document.addEventListener("DOMContentLoaded", () => {
  const report = (err) => showError($("detect-error"), String(err));
  $("detect").addEventListener("click", () => runDetect().catch(report));
  $("detect-kind").addEventListener("change", () => {
    const rank = $("detect-kind").value === "rank";
    $("detect-value").step = rank ? "1" : "0.01";
    $("detect-value").min = rank ? "1" : "-1";
    $("detect-value").value = rank ? "20" : "0.3";
  });
  $("export-detect-geojson").addEventListener("click", () => exportDetections("geojson", "geojson").catch(report));
  $("export-detect-parquet").addEventListener("click", () => exportDetections("geoparquet", "parquet").catch(report));
});
