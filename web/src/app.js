// GET /app: the explorer. A full-screen map of coverage (mly1_public) and map features (points
// and traffic signs drawn with the Mapillary sprites), filtered by capture date; clicking an
// image opens the viewer on it; "Download" saves the visible points or traffic signs as GeoJSON.
// `/app?pKey=<id>&focus=photo` (MapillaryJS's attribution link) opens the viewer on that image.
import {
  addCurrentImageLayers, clickImages, coverageLayers, createMap, createViewer, followViewer,
  IMAGE_MIN_ZOOM, readConfig, tileSource,
} from "./common.js";
import { GeolocateControl, NavigationControl, ScaleControl } from "maplibre-gl";
import { createPlaceSearch } from "./geocoder.js";
import { installShortcuts } from "./shortcuts.js";
import { createTimeline, searchAll } from "./timeline.js";
import { createValuePicker } from "./values.js";
import "./app.css";

const config = readConfig();
const state = { imageId: null, lngLat: null, imageEvents: [], downloads: 0 };
/** Layer id → [tileset, source layer, download label]. */
const FEATURE_LAYERS = {
  points: ["mly_map_feature_point", "point", "points"],
  signs: ["mly_map_feature_traffic_sign", "traffic_sign", "traffic-signs"],
};
const SPRITE_PX = 28;
const SPRITE_NAME = /^[a-z0-9]+(--[a-z0-9-]+)+$/;

// -- the URL follows the view (issue #18): lat, lng, z, pKey, x, y, dateFrom, dateTo, … -------
// Mapillary's own parameter names, so links people already share keep working (x, y: the point
// of the photo in the viewer's centre, i.e. where the viewer looks). Reload or share the address
// and the same map, image, view direction and filters come back.
const params = new URLSearchParams(window.location.search);
function number(name, min, max) {
  const value = Number.parseFloat(params.get(name) ?? "");
  return Number.isFinite(value) && value >= min && value <= max ? value : null;
}
const fromUrl = { lat: number("lat", -85, 85), lng: number("lng", -180, 180), z: number("z", 0, 22) };
const start = fromUrl.lat !== null && fromUrl.lng !== null
  ? { center: [fromUrl.lng, fromUrl.lat], zoom: fromUrl.z ?? 15 }
  : config.image
    ? { center: [config.image.lng, config.image.lat], zoom: fromUrl.z ?? 17 }
    : { center: config.center || [0, 20], zoom: config.center ? 15 : 1.5 };
const map = createMap(config, document.getElementById("map"), {
  ...start,
  sources: {
    mly: tileSource(config, "mly1_public"),
    points: tileSource(config, FEATURE_LAYERS.points[0], IMAGE_MIN_ZOOM),
    signs: tileSource(config, FEATURE_LAYERS.signs[0], IMAGE_MIN_ZOOM),
  },
  layers: [
    ...coverageLayers("mly"),
    ...Object.entries(FEATURE_LAYERS).map(([id, [, sourceLayer]]) => ({
      id, type: "symbol", source: id, "source-layer": sourceLayer, minzoom: IMAGE_MIN_ZOOM,
      layout: { "icon-image": ["get", "value"], "icon-allow-overlap": true,
                "icon-ignore-placement": true, "icon-size": ["interpolate", ["linear"], ["zoom"], 14, 0.6, 18, 1] },
    })),
  ],
});
let viewer = null;
window.wayview = { config, state, map, get viewer() { return viewer; } };

// -- navigation: zoom and compass, scale, where am I (issue #18 item 2) ----------------------
map.addControl(new NavigationControl({ visualizePitch: true }), "top-right");
map.addControl(new GeolocateControl({ positionOptions: { enableHighAccuracy: true },
                                      trackUserLocation: false }), "top-right");
map.addControl(new ScaleControl({ unit: "metric" }), "bottom-left");
const placeSearch = createPlaceSearch({
  config, map, form: document.getElementById("place-search"),
  input: document.getElementById("place"), results: document.getElementById("place-results"),
});

// -- sprites: one SVG per value, rasterised on demand ------------------------------------------
map.setMissingStyleImageResolver(async (id) => {
  if (!SPRITE_NAME.test(id) || map.hasImage(id)) return;
  const ratio = Math.max(1, Math.round(window.devicePixelRatio || 1));
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = SPRITE_PX * ratio;
  const ctx = canvas.getContext("2d");
  try {
    const img = new Image();
    img.src = `${config.spritesUrl}/${id}.svg`;
    await img.decode();
    const scale = Math.min(canvas.width / img.naturalWidth, canvas.height / img.naturalHeight) || 1;
    const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
    ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  } catch {
    // No sprite for this value: a plain marker.
    ctx.fillStyle = "#3a7bd5";
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 2 * ratio;
    ctx.beginPath();
    ctx.arc(canvas.width / 2, canvas.height / 2, canvas.width / 3, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
  if (!map.hasImage(id)) {
    map.addImage(id, ctx.getImageData(0, 0, canvas.width, canvas.height), { pixelRatio: ratio });
  }
});

// -- date filters on captured_at (images, sequences) and first/last seen (map features) ------
const fromInput = document.getElementById("from");
const toInput = document.getElementById("to");
function dayMs(input, endOfDay) {
  if (!input.value) return null;
  const ms = Date.parse(`${input.value}T00:00:00Z`);
  return Number.isFinite(ms) ? ms + (endOfDay ? 86400000 : 0) : null;
}
// Who and what (issue #18 item 3): creator (username), organization (id), panoramas only.
// The image and sequence layers carry these properties and are filtered here; the overview
// points (below z6) carry only `is_pano`, so they hide while a creator or organization is set.
const creatorInput = document.getElementById("creator");
const organizationInput = document.getElementById("organization");
const panoInput = document.getElementById("pano-only");
const filterNote = document.getElementById("filter-note");
const who = { creatorId: null };
// Camera make/model: the tiles do not carry them, so the server filters (a Graph search of the
// view from zoom 14, where images are drawn one by one) and the map keeps the ids it answered.
const makeInput = document.getElementById("make");
const modelInput = document.getElementById("model");
const cameraNote = document.getElementById("camera-note");
const camera = { active: false, ids: [], sequences: [], generation: 0, searches: 0 };
// Map-feature values picked from the taxonomy (the tiles carry `value`: filtered here).
const featureValues = { chosen: [] };
function applyDates() {
  const from = dayMs(fromInput, false);
  const to = dayMs(toInput, true); // the "to" day is included
  const span = (startKey, endKey, extra = []) => {
    const parts = ["all", ...extra];
    if (from !== null) parts.push([">=", ["get", endKey], from]);
    if (to !== null) parts.push(["<", ["get", startKey], to]);
    return parts.length > 1 ? parts : null;
  };
  const pano = panoInput.checked ? [["==", ["get", "is_pano"], true]] : [];
  const organization = /^\d{1,16}$/.test(organizationInput.value.trim())
    ? [["==", ["to-string", ["get", "organization_id"]], organizationInput.value.trim()]] : [];
  const creator = who.creatorId !== null
    ? [["==", ["to-string", ["get", "creator_id"]], who.creatorId]] : [];
  const byCamera = (ids) => (camera.active
    ? [["in", ["to-string", ["get", "id"]], ["literal", ids]]] : []);
  const common = [...pano, ...organization, ...creator];
  map.setFilter("sequences", span("captured_at", "captured_at", [...common, ...byCamera(camera.sequences)]));
  map.setFilter("images", span("captured_at", "captured_at", [...common, ...byCamera(camera.ids)]));
  map.setFilter("overview", span("captured_at", "captured_at", pano));
  map.setLayoutProperty("overview", "visibility",
                        creator.length || organization.length || camera.active ? "none" : "visible");
  const values = featureValues.chosen.length
    ? [["in", ["get", "value"], ["literal", featureValues.chosen]]] : [];
  for (const id of Object.keys(FEATURE_LAYERS)) map.setFilter(id, span("first_seen_at", "last_seen_at", values));
}
/** The view split into strips the search accepts (`search.max_bbox_area_deg2`). */
function searchBoxes(bounds) {
  const [w, s, e, n] = [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()]
    .map((v, i) => Math.max(i % 2 ? -85 : -180, Math.min(i % 2 ? 85 : 180, v)));
  const limit = config.maxBboxArea > 0 ? config.maxBboxArea * 0.95 : Infinity;
  const strips = Math.max(1, Math.ceil(((e - w) * (n - s)) / limit));
  if (strips > 16) return null;
  const width = (e - w) / strips;
  return Array.from({ length: strips }, (_, k) =>
    [w + k * width, s, k === strips - 1 ? e : w + (k + 1) * width, n].map((v) => v.toFixed(6)).join(","));
}
/** Ask the server which images of the view the camera took (from zoom 14). */
async function refreshCamera() {
  const make = makeInput.value.trim();
  const model = modelInput.value.trim();
  const mine = ++camera.generation;
  camera.active = Boolean(make || model);
  cameraNote.textContent = "";
  if (!camera.active) return;
  const boxes = map.getZoom() >= IMAGE_MIN_ZOOM - 0.01 ? searchBoxes(map.getBounds()) : null;
  if (boxes === null) {
    camera.ids = [];
    camera.sequences = [];
    cameraNote.textContent = "Zoom in (zoom 14+) to see the images this camera took.";
    return;
  }
  const filters = new URLSearchParams();
  if (make) filters.set("make", make);
  if (model) filters.set("model", model);
  const token = encodeURIComponent(config.token);
  try {
    const pages = await Promise.all(boxes.map((bbox) => searchAll(
      `${config.base}/images?bbox=${bbox}&${filters}&fields=id,sequence&limit=2000&access_token=${token}`, 10)));
    if (mine !== camera.generation) return;
    const rows = pages.flat();
    camera.ids = rows.map((r) => String(r.id));
    camera.sequences = [...new Set(rows.map((r) => String(r.sequence)))];
    camera.searches += 1;
    if (!rows.length) cameraNote.textContent = "No images by this camera in view.";
  } catch {
    if (mine !== camera.generation) return;
    camera.ids = [];
    camera.sequences = [];
    cameraNote.textContent = "The camera filter could not be applied (search failed).";
  }
}
/** Look the creator's id up by username (the tiles carry ids): one Graph search. */
async function resolveCreator() {
  const name = creatorInput.value.trim();
  filterNote.textContent = "";
  if (!name) {
    who.creatorId = null;
    return;
  }
  const url = `${config.base}/images?creator_username=${encodeURIComponent(name)}&limit=1`
    + `&fields=creator&access_token=${encodeURIComponent(config.token)}`;
  try {
    const rows = (await (await fetch(url)).json()).data || [];
    who.creatorId = rows.length ? String(rows[0].creator.id) : "none";
    if (!rows.length) filterNote.textContent = `No images by ${name}.`;
  } catch {
    who.creatorId = "none";
    filterNote.textContent = "The creator could not be looked up.";
  }
}
const DAY = /^\d{4}-\d{2}-\d{2}$/;
if (DAY.test(params.get("dateFrom") ?? "")) fromInput.value = params.get("dateFrom");
if (DAY.test(params.get("dateTo") ?? "")) toInput.value = params.get("dateTo");
creatorInput.value = (params.get("creator") ?? "").slice(0, 100);
if (/^\d{1,16}$/.test(params.get("organization") ?? "")) organizationInput.value = params.get("organization");
panoInput.checked = params.get("pano") === "1";
makeInput.value = (params.get("make") ?? "").slice(0, 100);
modelInput.value = (params.get("model") ?? "").slice(0, 100);
featureValues.chosen = (params.get("values") ?? "").split(",").filter((v) => SPRITE_NAME.test(v)).slice(0, 50);
createValuePicker({
  config, initial: featureValues.chosen,
  input: document.getElementById("value-search"),
  options: document.getElementById("value-options"),
  chosen: document.getElementById("value-chosen"),
  onChange: (values) => { featureValues.chosen = values; refilter(); },
});
const refilter = () => { applyDates(); writeUrl(); };
fromInput.addEventListener("change", refilter);
toInput.addEventListener("change", refilter);
organizationInput.addEventListener("change", refilter);
panoInput.addEventListener("change", refilter);
creatorInput.addEventListener("change", async () => {
  await resolveCreator();
  refilter();
  state.filtered = (state.filtered || 0) + 1;
});
for (const input of [makeInput, modelInput]) {
  input.addEventListener("change", async () => {
    await refreshCamera();
    refilter();
  });
}
let cameraTimer = null;
map.on("moveend", () => {
  if (!camera.active) return;
  clearTimeout(cameraTimer);
  cameraTimer = setTimeout(async () => { await refreshCamera(); applyDates(); }, 300);
});
window.wayview.camera = camera;
window.wayview.featureValues = featureValues;

/** Put the view in the address bar (replaceState: no history entry per pan). */
function writeUrl() {
  const center = map.getCenter();
  const next = new URLSearchParams();
  next.set("lat", center.lat.toFixed(6));
  next.set("lng", center.lng.toFixed(6));
  next.set("z", map.getZoom().toFixed(2));
  if (state.imageId && document.body.classList.contains("with-viewer")) {
    next.set("pKey", state.imageId);
    if (state.look) {
      next.set("x", state.look[0].toFixed(4));
      next.set("y", state.look[1].toFixed(4));
    }
  }
  if (fromInput.value) next.set("dateFrom", fromInput.value);
  if (toInput.value) next.set("dateTo", toInput.value);
  if (creatorInput.value.trim()) next.set("creator", creatorInput.value.trim());
  if (organizationInput.value.trim()) next.set("organization", organizationInput.value.trim());
  if (panoInput.checked) next.set("pano", "1");
  if (makeInput.value.trim()) next.set("make", makeInput.value.trim());
  if (modelInput.value.trim()) next.set("model", modelInput.value.trim());
  if (featureValues.chosen.length) next.set("values", featureValues.chosen.join(","));
  window.history.replaceState(null, "", `${window.location.pathname}?${next}`);
}
map.on("moveend", writeUrl);

// -- layer switches --------------------------------------------------------------------------
for (const id of Object.keys(FEATURE_LAYERS)) {
  document.getElementById(`show-${id}`).addEventListener("change", (event) => {
    map.setLayoutProperty(id, "visibility", event.target.checked ? "visible" : "none");
  });
}

// -- the viewer panel ------------------------------------------------------------------------
// Where the viewer looks (x, y of the photo at its centre) comes back from the address once.
const LOOK = { x: number("x", 0, 1), y: number("y", 0, 1) };
let pendingLook = LOOK.x !== null && LOOK.y !== null && params.get("pKey") ? [LOOK.x, LOOK.y] : null;
const timeline = createTimeline({
  config, container: document.getElementById("timeline"),
  onPick: (id) => { if (viewer) viewer.moveTo(id).catch(() => {}); },
  onResize: () => { if (viewer) viewer.resize(); },
});
window.wayview.timeline = timeline.state;
const credit = document.getElementById("viewer-credit");
const organizationNames = new Map();
/** "12 Mar 2024 by <user> · <organization>": links to their public pages (issue #18 item 6). */
async function showCredit(image) {
  const link = (href, text) => {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  };
  const date = new Date(image.capturedAt).toISOString().slice(0, 10);
  const parts = [document.createTextNode(date)];
  if (image.creatorUsername) {
    parts.push(document.createTextNode(" by "),
               link(`/app/user/${encodeURIComponent(image.creatorUsername)}`, image.creatorUsername));
  }
  credit.replaceChildren(...parts);
  const org = image.ownerId && /^\d{1,16}$/.test(String(image.ownerId)) ? String(image.ownerId) : null;
  if (!org) return;
  if (!organizationNames.has(org)) {
    organizationNames.set(org, fetch(`${config.base}/${org}?fields=name&access_token=${encodeURIComponent(config.token)}`)
      .then((r) => (r.ok ? r.json() : {})).then((body) => body.name || "organization")
      .catch(() => "organization"));
  }
  const name = await organizationNames.get(org);
  if (state.imageId === image.id) credit.append(document.createTextNode(" · "), link(`/app/org/${org}`, name));
}
/** Remember where the viewer looks, for the address (x, y) and the timeline (bearing). */
async function followLook() {
  try {
    const [center, bearing, position, image] = await Promise.all([
      viewer.getCenter(), viewer.getBearing(), viewer.getPosition(), viewer.getImage()]);
    state.look = center;
    state.bearing = bearing;
    writeUrl();
    if (image) timeline.update(position, bearing, { id: image.id, sequenceId: image.sequenceId });
  } catch {
    // The viewer is between images: the next event tells.
  }
}
function openViewer(imageId) {
  document.body.classList.add("with-viewer");
  map.resize();
  padMap();
  if (viewer === null) {
    viewer = createViewer(config, document.getElementById("viewer"), imageId);
    viewer.on("image", (event) => {
      state.imageEvents.push(event.image.id);
      state.imageId = event.image.id;
      if (pendingLook && event.image.id === params.get("pKey")) {
        viewer.setCenter(pendingLook);
        pendingLook = null;
      }
      writeUrl();
      showCredit(event.image);
      followLook();
      // Reporting happens on the server's own page (sign-in first if needed).
      document.getElementById("report-image").href = `/report/${encodeURIComponent(event.image.id)}`;
      // Its managers fix the blurring there too (others are told the image is not theirs).
      document.getElementById("reblur-image").href =
        `/account/images/${encodeURIComponent(event.image.id)}/blur`;
    });
    let lookTimer = null;
    viewer.on("bearing", () => {
      clearTimeout(lookTimer);
      lookTimer = setTimeout(followLook, 200);
    });
    followViewer(viewer, map, state);
  } else {
    viewer.resize();
    viewer.moveTo(imageId).catch(() => {});
  }
}
function closeViewer() {
  if (!document.body.classList.contains("with-viewer")) return;
  document.body.classList.remove("with-viewer");
  map.resize();
  padMap();
  writeUrl();
}
document.getElementById("close-viewer").addEventListener("click", closeViewer);

// -- the panel folds away (small screens start folded) ----------------------------------------
const toggle = document.getElementById("toggle-controls");
const controls = document.getElementById("controls");
/** Keep the map's centre (where the viewer's image is drawn) clear of the panel. */
function padMap() {
  const box = controls.getBoundingClientRect();
  const { clientWidth, clientHeight } = map.getContainer();
  const folded = document.body.classList.contains("controls-folded");
  const beside = !folded && box.right < clientWidth / 2;
  map.setPadding(beside
    ? { left: Math.round(box.right), top: 0, right: 0, bottom: 0 }
    : { left: 0, top: Math.round(Math.min(box.bottom, clientHeight / 2)), right: 0, bottom: 0 });
}
function foldControls(folded) {
  document.body.classList.toggle("controls-folded", folded);
  toggle.setAttribute("aria-expanded", String(!folded));
  toggle.textContent = folded ? "Filters" : "Hide";
  padMap();
}
window.addEventListener("resize", padMap);
toggle.addEventListener("click", () => {
  foldControls(!document.body.classList.contains("controls-folded"));
});
foldControls(window.matchMedia("(max-width: 600px)").matches);

// -- keyboard shortcuts (press ? for the list) ------------------------------------------------
installShortcuts({
  dialog: document.getElementById("shortcuts"),
  opener: document.getElementById("show-shortcuts"),
  keys: {
    "/": ["Search a place (or the first filter)", () => {
      foldControls(false);
      (placeSearch ? document.getElementById("place") : fromInput).focus();
    }],
    f: ["Show or hide the filters", () => toggle.click()],
    m: ["Focus the map (then arrows pan, + and − zoom)", () => map.getCanvas().focus()],
    v: ["Focus the viewer (then arrows move)", () => {
      const canvas = document.querySelector("#viewer .mapillary-interactive") || document.getElementById("viewer");
      if (document.body.classList.contains("with-viewer")) canvas.focus();
    }],
    "[": ["Earlier capture of this place", () => timeline.step(-1)],
    "]": ["Later capture of this place", () => timeline.step(1)],
    Escape: ["Close the viewer", closeViewer],
  },
});

// -- download of the visible map features ------------------------------------------------------
/** The features of `layerId` drawn in the current view, one per map feature. */
export function visibleFeatures(layerId) {
  const seen = new Map();
  for (const f of map.queryRenderedFeatures({ layers: [layerId] })) {
    const id = String(f.properties.id);
    if (seen.has(id)) continue;
    seen.set(id, {
      type: "Feature",
      id,
      geometry: { type: "Point", coordinates: f.geometry.coordinates },
      properties: {
        id, value: f.properties.value,
        first_seen_at: f.properties.first_seen_at, last_seen_at: f.properties.last_seen_at,
      },
    });
  }
  return { type: "FeatureCollection", features: [...seen.values()] };
}
window.wayview.visibleFeatures = visibleFeatures;

document.getElementById("download").addEventListener("click", () => {
  const layerId = document.getElementById("download-kind").value;
  const collection = visibleFeatures(layerId);
  const blob = new Blob([JSON.stringify(collection)], { type: "application/geo+json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `wayview-${FEATURE_LAYERS[layerId][2]}-${new Date().toISOString().slice(0, 10)}.geojson`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  state.downloads += 1;
});

map.on("load", async () => {
  addCurrentImageLayers(map);
  clickImages(map, openViewer);
  await resolveCreator();
  applyDates();
  writeUrl();
  window.wayview.mapLoaded = true;
  if (config.image) openViewer(config.image.id);
});
