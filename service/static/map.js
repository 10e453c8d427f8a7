"use strict";

// Results on a map (Leaflet, vendored): footprints in EPSG:4326 numbered by rank, scene overviews as image
// overlays, a rectangle drawn with the mouse as the bbox filter, a metric scale bar, the cursor's lon/lat and a
// labelled graticule. No basemap is needed, because deployments are often offline; a tile layer is the
// server's choice (POSAPL_MAP_TILES, read from /page-config.json), so that the page's CSP can name its origin.
// Archive strings (paths) reach the map only as text nodes: tooltips are DOM nodes, never HTML strings.
(() => {
  const MAX_OVERLAYS = 20; // scene overviews drawn at once (each is one image request)
  const MIN_DRAG_PX = 4; // a smaller drag is a click, not an area
  const state = {
    map: null, bbox: null, area: null, footprints: null, detections: null, ranks: null, overviews: null, graticule: null,
    drawing: false, // from "Draw area" until the click that ends the drag has passed
  };
  const round = (value) => Math.round(value * 1e6) / 1e6;
  const clamp = (value, low, high) => Math.min(high, Math.max(low, value));
  const $ = (id) => document.getElementById(id);

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

  // A non-interactive text label on the map (graticule degrees, result ranks).
  function label(latlng, text, className, pane) {
    const icon = L.divIcon({ className, html: node("span", { text }), iconSize: null });
    return L.marker(latlng, { icon, interactive: false, keyboard: false, pane });
  }

  function degrees(value, decimals, positive, negative) {
    const hemisphere = value > 0 ? positive : value < 0 ? negative : "";
    return `${Math.abs(value).toFixed(decimals)}°${hemisphere}`;
  }

  // Lines every `step` degrees: the finest round step that keeps lines at least MIN_LINE_PX apart, so that
  // their labels (at the view's top for longitudes, right for latitudes: the zoom buttons are left) do not
  // run into each other.
  const STEPS = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30];
  const MIN_LINE_PX = 90;
  const LABEL_MARGIN_PX = 40; // a longitude label centred nearer the left edge would be cut off

  function drawGraticule() {
    const map = state.map;
    const view = map.getBounds();
    const perPixel = (view.getEast() - view.getWest()) / Math.max(1, map.getSize().x);
    const step = STEPS.find((candidate) => candidate / perPixel >= MIN_LINE_PX) || STEPS[STEPS.length - 1];
    const decimals = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
    const south = clamp(Math.floor(view.getSouth() / step) * step, -90, 90);
    const north = clamp(Math.ceil(view.getNorth() / step) * step, -90, 90);
    const west = clamp(Math.floor(view.getWest() / step) * step, -180, 180);
    const east = clamp(Math.ceil(view.getEast() / step) * step, -180, 180);
    const top = clamp(view.getNorth(), -90, 90);
    const right = clamp(view.getEast(), -180, 180);
    const style = { color: "#9fb3c2", weight: 0.6, interactive: false, pane: "graticule" };
    state.graticule.clearLayers();
    for (let i = 0; west + i * step <= east + step / 1e6; i += 1) {
      const lon = round(west + i * step);
      state.graticule.addLayer(L.polyline([[south, lon], [north, lon]], style));
      if (map.latLngToContainerPoint([top, lon]).x > LABEL_MARGIN_PX) {
        state.graticule.addLayer(label([top, lon], degrees(lon, decimals, "E", "W"), "graticule-label lon", "degrees"));
      }
    }
    for (let i = 0; south + i * step <= north + step / 1e6; i += 1) {
      const lat = round(south + i * step);
      state.graticule.addLayer(L.polyline([[lat, west], [lat, east]], style));
      if (lat < top) {
        state.graticule.addLayer(label([lat, right], degrees(lat, decimals, "N", "S"), "graticule-label lat", "degrees"));
      }
    }
  }

  // The box as the API's bbox ([west, south, east, north], lon/lat), or null when it has no area.
  function toBbox(bounds) {
    const sw = bounds.getSouthWest().wrap();
    const ne = bounds.getNorthEast().wrap();
    const bbox = [
      round(clamp(Math.min(sw.lng, ne.lng), -180, 180)), round(clamp(sw.lat, -90, 90)),
      round(clamp(Math.max(sw.lng, ne.lng), -180, 180)), round(clamp(ne.lat, -90, 90)),
    ];
    return bbox[0] < bbox[2] && bbox[1] < bbox[3] ? bbox : null;
  }

  function setArea(bbox) {
    if (state.area) state.area.remove();
    state.area = null;
    state.bbox = bbox;
    if (bbox) {
      state.area = L.rectangle([[bbox[1], bbox[0]], [bbox[3], bbox[2]]], {
        color: "#d9822b", weight: 2, fill: false, dashArray: "6 4", interactive: false,
      }).addTo(state.map);
    }
    $("map-area").textContent = bbox ? `area: ${bbox.join(", ")} (lon/lat)` : "no area: results from everywhere";
    $("map-clear").hidden = !bbox;
  }

  function note(message) {
    $("map-note").textContent = message;
    $("map-note").hidden = !message;
  }

  // Press "Draw area", then drag on the map: mouse down sets one corner, mouse up the other. A click without a
  // drag (or a box without area) sets no filter: searching with it would match almost nothing.
  function startDrawing(button) {
    const map = state.map;
    let start = null;
    let box = null;
    note("");
    state.drawing = true;
    map.dragging.disable();
    map.getContainer().classList.add("drawing");
    button.classList.add("active");
    const move = (e) => {
      if (!start) return;
      const bounds = L.latLngBounds(start.latlng, e.latlng);
      if (box) box.setBounds(bounds);
      else box = L.rectangle(bounds, { color: "#d9822b", weight: 2, interactive: false }).addTo(map);
    };
    const down = (e) => { start = e; };
    const up = (e) => {
      if (!start) return;
      map.off("mousedown", down).off("mousemove", move).off("mouseup", up);
      if (box) box.remove();
      map.dragging.enable();
      map.getContainer().classList.remove("drawing");
      button.classList.remove("active");
      // The browser follows this mouseup with a click on the footprint under it: not a request to open that item.
      setTimeout(() => { state.drawing = false; }, 0);
      const dragged = start.containerPoint.subtract(e.containerPoint);
      const bbox = Math.abs(dragged.x) >= MIN_DRAG_PX && Math.abs(dragged.y) >= MIN_DRAG_PX
        ? toBbox(L.latLngBounds(start.latlng, e.latlng))
        : null;
      if (!bbox) {
        note("No area drawn: press “Draw area”, then drag a box on the map.");
        return;
      }
      setArea(bbox);
      if ($("query").value.trim()) $("search-form").requestSubmit();
    };
    map.on("mousedown", down).on("mousemove", move).on("mouseup", up);
  }

  // The tooltip of one footprint, built from text nodes (a path may hold markup: it must show literally).
  function tooltip(hit, rank) {
    const when = hit.time ? ` · ${hit.time.slice(0, 10)}` : "";
    const gsd = hit.gsd ? ` · ${hit.gsd.toPrecision(3)} m/px` : "";
    return node("div", { class: "footprint-tip" },
      node("strong", { text: `#${rank} ` }),
      node("span", { class: "tip-path", text: hit.path }),
      node("span", { text: ` · score ${hit.score.toFixed(3)}${gsd}${when}` }));
  }

  // The overview is warped to Web Mercator by the server: its own bounds, when given, place it exactly.
  async function placeOverview(scene) {
    const response = await fetch(scene.url);
    if (!response.ok) return;
    const info = await response.json();
    let bounds = null;
    if (Array.isArray(info.overview_bounds) && info.overview_bounds.length === 4) {
      const [west, south, east, north] = info.overview_bounds;
      bounds = L.latLngBounds([south, west], [north, east]);
    } else if (info.footprint) {
      bounds = L.geoJSON(info.footprint).getBounds();
    }
    if (bounds) state.overviews.addLayer(L.imageOverlay(info.overview_url, bounds, { pane: "overviews", opacity: 0.9 }));
  }

  function intersect(a, b) {
    const south = Math.max(a.getSouth(), b.getSouth());
    const north = Math.min(a.getNorth(), b.getNorth());
    const west = Math.max(a.getWest(), b.getWest());
    const east = Math.min(a.getEast(), b.getEast());
    return south <= north && west <= east ? L.latLngBounds([south, west], [north, east]) : null;
  }

  // Fit the view to the hits; with an area of interest, to the parts of the hits inside it, so that one coarse
  // scene covering the world does not zoom the map out to the world.
  function fitView(hitBounds) {
    const area = state.bbox ? L.latLngBounds([state.bbox[1], state.bbox[0]], [state.bbox[3], state.bbox[2]]) : null;
    let target = null;
    for (const bounds of hitBounds) {
      const part = area ? intersect(bounds, area) : bounds;
      if (part) target = target ? target.extend(part) : L.latLngBounds(part.getSouthWest(), part.getNorthEast());
    }
    // Not animated: a zoom animation still running when the user starts drawing would move the map under the
    // mouse when it ends (Leaflet completes it after any later view change).
    if (target) state.map.fitBounds(target, { padding: [24, 24], maxZoom: 16, animate: false });
  }

  // Draw the hits of one search; click a footprint to open that item in the lightbox.
  function showResults(hits) {
    if (!state.map) return;
    state.footprints.clearLayers();
    state.ranks.clearLayers();
    state.overviews.clearLayers();
    const scenes = new Map();
    const hitBounds = [];
    hits.forEach((hit, i) => {
      if (!hit.footprint) return;
      const layer = L.geoJSON(hit.footprint, {
        style: { color: "#1f6f8b", weight: 2, fillOpacity: 0.08, className: "footprint" },
      });
      layer.bindTooltip(tooltip(hit, i + 1), { sticky: true });
      layer.on("click", () => { if (!state.drawing) openLightbox(hit); });
      state.footprints.addLayer(layer);
      const bounds = layer.getBounds();
      hitBounds.push(bounds);
      state.ranks.addLayer(label(bounds.getCenter(), String(i + 1), "rank-label", "ranks"));
      if (hit.scene && hit.scene.url && !scenes.has(hit.scene.url)) scenes.set(hit.scene.url, hit.scene);
    });
    $("map-count").textContent = `${hitBounds.length} of ${hits.length} results on the map`;
    fitView(hitBounds);
    [...scenes.values()].slice(0, MAX_OVERLAYS).forEach((scene) => placeOverview(scene).catch(() => {}));
  }

  // Draw the dissolved areas of a detection (POST /v1/detect polygons) over the results and fit the view to them.
  function showDetections(polygons) {
    if (!state.map) return;
    state.detections.clearLayers();
    const bounds = polygons.map((polygon) => {
      const layer = L.geoJSON(polygon.geometry, {
        style: { color: "#c0392b", weight: 2, fillOpacity: 0.25, className: "detection" },
      });
      const text = `${polygon.count} tiles · max ${polygon.max_score.toFixed(3)} · mean ${polygon.mean_score.toFixed(3)}`;
      layer.bindTooltip(node("span", { text }), { sticky: true });
      state.detections.addLayer(layer);
      return layer.getBounds();
    });
    $("map-count").textContent = `${polygons.length} detected areas on the map`;
    fitView(bounds);
  }

  // The filters this panel sets, merged into the search request by the page.
  function filters() {
    return state.bbox ? { bbox: state.bbox } : {};
  }

  // The cursor's lon/lat, in the map's bottom-left corner beside the scale bar.
  function cursorControl() {
    const control = L.control({ position: "bottomleft" });
    control.onAdd = (map) => {
      const box = node("div", { class: "leaflet-control map-cursor", id: "map-cursor", text: "lon —, lat —" });
      map.on("mousemove", (e) => {
        const at = e.latlng.wrap();
        box.textContent = `lon ${at.lng.toFixed(5)}°, lat ${at.lat.toFixed(5)}°`;
      });
      map.on("mouseout", () => { box.textContent = "lon —, lat —"; });
      return box;
    };
    return control;
  }

  async function addBasemap(map) {
    const response = await fetch("/page-config.json");
    if (!response.ok) return;
    const config = await response.json();
    if (config.map_tiles) L.tileLayer(config.map_tiles, { maxZoom: 19 }).addTo(map);
  }

  function build() {
    const panel = $("map-panel");
    if (!panel || !window.L) return;
    const draw = node("button", { type: "button", id: "map-draw", text: "Draw area" });
    const clear = node("button", { type: "button", id: "map-clear", text: "Clear area" });
    const message = node("span", { id: "map-note", class: "map-note", role: "status" });
    clear.hidden = true;
    message.hidden = true;
    panel.append(
      node("div", { class: "map-controls" },
        draw, clear,
        node("span", { id: "map-area", class: "meta" }),
        node("span", { id: "map-count", class: "meta" }),
        message),
      node("div", { id: "map", class: "map", "aria-label": "Map of the results' footprints" }),
    );
    const map = L.map("map", { worldCopyJump: true, minZoom: 1, attributionControl: false });
    state.map = map;
    map.createPane("graticule").style.zIndex = 250;
    map.createPane("overviews").style.zIndex = 350;
    map.createPane("ranks").style.zIndex = 450;
    map.createPane("degrees").style.zIndex = 460; // graticule labels stay readable over scene overviews
    state.graticule = L.layerGroup().addTo(map);
    state.overviews = L.layerGroup().addTo(map);
    state.footprints = L.featureGroup().addTo(map);
    state.detections = L.featureGroup().addTo(map);
    state.ranks = L.layerGroup().addTo(map);
    L.control.scale({ metric: true, imperial: false, position: "bottomleft" }).addTo(map);
    cursorControl().addTo(map);
    map.on("zoomend moveend", drawGraticule);
    map.setView([20, 0], 2);
    draw.addEventListener("click", () => startDrawing(draw));
    clear.addEventListener("click", () => { note(""); setArea(null); });
    setArea(null);
    addBasemap(map).catch(() => {});
  }

  // `map` is the Leaflet map once the page has loaded (for scripting the page, e.g. in tests).
  window.posaplMap = { filters, showResults, showDetections, get map() { return state.map; } };
  document.addEventListener("DOMContentLoaded", build);
})();
