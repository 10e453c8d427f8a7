"use strict";

// Results on a map (Leaflet, vendored): footprints in EPSG:4326, scene overviews as image overlays, a rectangle
// drawn with the mouse as the bbox filter, and an acquisition-time range. No basemap is needed, because
// deployments are often offline: a plain background and a graticule. A tile layer is opt-in through the page URL
// (?tiles=https://host/{z}/{x}/{y}.png), never loaded by default.
(() => {
  const MAX_OVERLAYS = 20; // scene overviews drawn at once (each is one image request)
  const state = { map: null, bbox: null, area: null, footprints: null, overviews: null, graticule: null };
  const round = (value) => Math.round(value * 1e6) / 1e6;
  const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

  function node(tag, attrs = {}, ...children) {
    const element = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") element.className = value;
      else if (key === "text") element.textContent = value;
      else element.setAttribute(key, value);
    }
    element.append(...children);
    return element;
  }

  // Lines every `step` degrees, chosen from the zoom so that a handful are visible.
  function drawGraticule() {
    const map = state.map;
    const steps = [30, 30, 15, 10, 5, 2, 1, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
    const step = steps[Math.min(steps.length - 1, Math.max(0, Math.round(map.getZoom())))];
    const view = map.getBounds();
    const south = clamp(Math.floor(view.getSouth() / step) * step, -90, 90);
    const north = clamp(Math.ceil(view.getNorth() / step) * step, -90, 90);
    const west = clamp(Math.floor(view.getWest() / step) * step, -180, 180);
    const east = clamp(Math.ceil(view.getEast() / step) * step, -180, 180);
    const style = { color: "#9fb3c2", weight: 0.6, interactive: false, pane: "graticule" };
    state.graticule.clearLayers();
    for (let lon = west; lon <= east + 1e-9; lon += step) {
      state.graticule.addLayer(L.polyline([[south, lon], [north, lon]], style));
    }
    for (let lat = south; lat <= north + 1e-9; lat += step) {
      state.graticule.addLayer(L.polyline([[lat, west], [lat, east]], style));
    }
  }

  function setArea(bounds) {
    if (state.area) state.area.remove();
    state.area = null;
    state.bbox = null;
    if (bounds) {
      const sw = bounds.getSouthWest().wrap();
      const ne = bounds.getNorthEast().wrap();
      state.bbox = [
        round(clamp(Math.min(sw.lng, ne.lng), -180, 180)), round(clamp(sw.lat, -90, 90)),
        round(clamp(Math.max(sw.lng, ne.lng), -180, 180)), round(clamp(ne.lat, -90, 90)),
      ];
      state.area = L.rectangle([[state.bbox[1], state.bbox[0]], [state.bbox[3], state.bbox[2]]], {
        color: "#d9822b", weight: 2, fill: false, dashArray: "6 4", interactive: false,
      }).addTo(state.map);
    }
    document.getElementById("map-area").textContent = state.bbox
      ? `area: ${state.bbox.join(", ")} (lon/lat)`
      : "no area: results from everywhere";
    document.getElementById("map-clear").hidden = !state.bbox;
  }

  // Press "Draw area", then drag on the map: mouse down sets one corner, mouse up the other.
  function startDrawing(button) {
    const map = state.map;
    let start = null;
    let box = null;
    map.dragging.disable();
    map.getContainer().classList.add("drawing");
    button.classList.add("active");
    const move = (e) => {
      if (!start) return;
      const bounds = L.latLngBounds(start, e.latlng);
      if (box) box.setBounds(bounds);
      else box = L.rectangle(bounds, { color: "#d9822b", weight: 2, interactive: false }).addTo(map);
    };
    const down = (e) => { start = e.latlng; };
    const up = (e) => {
      if (!start) return;
      const bounds = L.latLngBounds(start, e.latlng);
      map.off("mousedown", down).off("mousemove", move).off("mouseup", up);
      if (box) box.remove();
      map.dragging.enable();
      map.getContainer().classList.remove("drawing");
      button.classList.remove("active");
      setArea(bounds);
      const form = document.getElementById("search-form");
      if (document.getElementById("query").value.trim()) form.requestSubmit();
    };
    map.on("mousedown", down).on("mousemove", move).on("mouseup", up);
  }

  function popupText(hit, rank) {
    const when = hit.time ? ` · ${hit.time.slice(0, 10)}` : "";
    const gsd = hit.gsd ? ` · ${hit.gsd.toPrecision(3)} m/px` : "";
    return `#${rank} ${hit.path} · score ${hit.score.toFixed(3)}${gsd}${when}`;
  }

  async function placeOverview(scene) {
    const response = await fetch(scene.url);
    if (!response.ok) return;
    const info = await response.json();
    if (!info.footprint) return;
    const bounds = L.geoJSON(info.footprint).getBounds();
    state.overviews.addLayer(L.imageOverlay(info.overview_url, bounds, { pane: "overviews", opacity: 0.9 }));
  }

  // Draw the hits of one search; click a footprint to open that item in the lightbox.
  function showResults(hits) {
    state.footprints.clearLayers();
    state.overviews.clearLayers();
    const scenes = new Map();
    hits.forEach((hit, i) => {
      if (!hit.footprint) return;
      const layer = L.geoJSON(hit.footprint, {
        style: { color: "#1f6f8b", weight: 2, fillOpacity: 0.08, className: "footprint" },
      });
      layer.bindTooltip(popupText(hit, i + 1), { sticky: true });
      layer.on("click", () => openLightbox(hit));
      state.footprints.addLayer(layer);
      if (hit.scene && hit.scene.url && !scenes.has(hit.scene.url)) scenes.set(hit.scene.url, hit.scene);
    });
    const mapped = state.footprints.getLayers().length;
    document.getElementById("map-count").textContent = `${mapped} of ${hits.length} results on the map`;
    if (mapped) state.map.fitBounds(state.footprints.getBounds(), { padding: [24, 24], maxZoom: 16 });
    [...scenes.values()].slice(0, MAX_OVERLAYS).forEach((scene) => placeOverview(scene).catch(() => {}));
  }

  // The filters this panel sets, merged into the search request by the page.
  function filters() {
    const chosen = {};
    if (state.bbox) chosen.bbox = state.bbox;
    const from = document.getElementById("time-from").value;
    const to = document.getElementById("time-to").value;
    if (from) chosen.time_from = from;
    if (to) chosen.time_to = to;
    return chosen;
  }

  function build() {
    const panel = document.getElementById("map-panel");
    if (!panel || !window.L) return;
    const draw = node("button", { type: "button", id: "map-draw", text: "Draw area" });
    const clear = node("button", { type: "button", id: "map-clear", text: "Clear area" });
    clear.hidden = true;
    panel.append(
      node("div", { class: "map-controls" },
        draw, clear,
        node("label", {}, "acquired from ", node("input", { type: "date", id: "time-from" })),
        node("label", {}, "to ", node("input", { type: "date", id: "time-to" })),
        node("span", { id: "map-area", class: "meta" }),
        node("span", { id: "map-count", class: "meta" })),
      node("div", { id: "map", class: "map", "aria-label": "Map of the results' footprints" }),
    );
    const map = L.map("map", { worldCopyJump: true, minZoom: 1, attributionControl: false });
    state.map = map;
    map.createPane("graticule").style.zIndex = 250;
    map.createPane("overviews").style.zIndex = 350;
    const tiles = new URLSearchParams(location.search).get("tiles");
    if (tiles) L.tileLayer(tiles, { maxZoom: 19 }).addTo(map);
    state.graticule = L.layerGroup().addTo(map);
    state.overviews = L.layerGroup().addTo(map);
    state.footprints = L.featureGroup().addTo(map);
    map.on("zoomend moveend", drawGraticule);
    map.setView([20, 0], 2);
    draw.addEventListener("click", () => startDrawing(draw));
    clear.addEventListener("click", () => setArea(null));
    setArea(null);
  }

  // `map` is the Leaflet map once the page has loaded (for scripting the page, e.g. in tests).
  window.posaplMap = { filters, showResults, get map() { return state.map; } };
  document.addEventListener("DOMContentLoaded", build);
})();
