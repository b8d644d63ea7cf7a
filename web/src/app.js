// GET /app: the explorer. A full-screen map of coverage (mly1_public) and map features (points
// and traffic signs drawn with the Mapillary sprites), filtered by capture date; clicking an
// image opens the viewer on it; "Download" saves the visible points or traffic signs as GeoJSON.
// `/app?pKey=<id>&focus=photo` (MapillaryJS's attribution link) opens the viewer on that image.
import {
  addCurrentImageLayers, clickImages, coverageLayers, createMap, createViewer, followViewer,
  IMAGE_MIN_ZOOM, readConfig, tileSource,
} from "./common.js";
import { GeolocateControl, NavigationControl, ScaleControl } from "maplibre-gl";
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

// -- the URL follows the view (issue #18): lat, lng, z, pKey, dateFrom, dateTo --------------
// Mapillary's own parameter names, so links people already share keep working. Reload or share
// the address and the same map, image and filters come back.
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
  for (const id of ["sequences", "images"]) {
    map.setFilter(id, span("captured_at", "captured_at", [...pano, ...organization, ...creator]));
  }
  map.setFilter("overview", span("captured_at", "captured_at", pano));
  map.setLayoutProperty("overview", "visibility",
                        creator.length || organization.length ? "none" : "visible");
  for (const id of Object.keys(FEATURE_LAYERS)) map.setFilter(id, span("first_seen_at", "last_seen_at"));
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

/** Put the view in the address bar (replaceState: no history entry per pan). */
function writeUrl() {
  const center = map.getCenter();
  const next = new URLSearchParams();
  next.set("lat", center.lat.toFixed(6));
  next.set("lng", center.lng.toFixed(6));
  next.set("z", map.getZoom().toFixed(2));
  if (state.imageId && document.body.classList.contains("with-viewer")) next.set("pKey", state.imageId);
  if (fromInput.value) next.set("dateFrom", fromInput.value);
  if (toInput.value) next.set("dateTo", toInput.value);
  if (creatorInput.value.trim()) next.set("creator", creatorInput.value.trim());
  if (organizationInput.value.trim()) next.set("organization", organizationInput.value.trim());
  if (panoInput.checked) next.set("pano", "1");
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
function openViewer(imageId) {
  document.body.classList.add("with-viewer");
  map.resize();
  if (viewer === null) {
    viewer = createViewer(config, document.getElementById("viewer"), imageId);
    viewer.on("image", (event) => {
      state.imageEvents.push(event.image.id);
      state.imageId = event.image.id;
      writeUrl();
      // Reporting happens on the server's own page (sign-in first if needed).
      document.getElementById("report-image").href = `/report/${encodeURIComponent(event.image.id)}`;
      // Its managers fix the blurring there too (others are told the image is not theirs).
      document.getElementById("reblur-image").href =
        `/account/images/${encodeURIComponent(event.image.id)}/blur`;
    });
    followViewer(viewer, map, state);
  } else {
    viewer.resize();
    viewer.moveTo(imageId).catch(() => {});
  }
}
document.getElementById("close-viewer").addEventListener("click", () => {
  document.body.classList.remove("with-viewer");
  map.resize();
  writeUrl();
});

// -- the panel folds away (small screens start folded) ----------------------------------------
const toggle = document.getElementById("toggle-controls");
function foldControls(folded) {
  document.body.classList.toggle("controls-folded", folded);
  toggle.setAttribute("aria-expanded", String(!folded));
  toggle.textContent = folded ? "Filters" : "Hide";
}
toggle.addEventListener("click", () => {
  foldControls(!document.body.classList.contains("controls-folded"));
});
foldControls(window.matchMedia("(max-width: 600px)").matches);

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
