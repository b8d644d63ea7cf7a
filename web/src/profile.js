// Public profile pages of contributors and organizations (issue #18 item 6): the figures are
// rendered by the server; this draws the owner's coverage on a small map. The tiles' sequence
// and image layers carry `creator_id` and `organization_id` and are filtered on them, as the
// explorer does; the overview points (below z6) carry neither, so there the map draws where
// the owner's newest sequences start (from the page's configuration) instead.
import { NavigationControl, ScaleControl } from "maplibre-gl";
import { coverageLayers, createMap, GREEN, readConfig, tileSource } from "./common.js";
import "./profile.css";

/** Zoom from which the `sequence` layer exists (spec §4.2). */
const SEQUENCE_MIN_ZOOM = 6;

const config = readConfig();
const container = document.getElementById("map");
const { profile } = config;
window.wayview = { config, mapLoaded: false };

if (container && profile && profile.bbox) {
  const key = profile.kind === "user" ? "creator_id" : "organization_id";
  const owner = ["==", ["to-string", ["get", key]], profile.id];
  const layers = coverageLayers("coverage")
    .filter((layer) => layer.id !== "overview")
    .map((layer) => ({ ...layer, filter: owner }));
  layers.push({
    id: "starts", type: "circle", source: "starts", maxzoom: SEQUENCE_MIN_ZOOM,
    paint: { "circle-color": GREEN, "circle-radius": 4, "circle-opacity": 0.9,
             "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 },
  });
  const starts = {
    type: "FeatureCollection",
    features: profile.starts.map((coordinates) => ({
      type: "Feature", properties: {}, geometry: { type: "Point", coordinates } })),
  };
  const [west, south, east, north] = profile.bbox;
  const map = createMap(config, container, {
    center: [(west + east) / 2, (south + north) / 2],
    zoom: 2,
    sources: { coverage: tileSource(config, "mly1_public"),
               starts: { type: "geojson", data: starts } },
    layers,
  });
  map.addControl(new NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new ScaleControl({ unit: "metric" }), "bottom-left");
  // A single image has no extent: the padding and the zoom cap frame it.
  map.fitBounds([[west, south], [east, north]], { padding: 40, maxZoom: 17, animate: false });
  map.once("idle", () => { window.wayview.mapLoaded = true; });
  window.wayview.map = map;
}
