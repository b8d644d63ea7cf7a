// GET /embed?image_key=<id>&style=photo|split|classic: a viewer (and a map) made for iframes.
//   photo   the MapillaryJS viewer alone
//   split   viewer and map side by side, equal size
//   classic both; one is large, the other a small inset, the button swaps them
// `window.wayview` exposes the viewer, the map and the image ids seen (tests, debugging).
import { NavigationDirection } from "mapillary-js";
import {
  addCurrentImageLayers, clickImages, coverageLayers, createMap, createViewer, followViewer,
  readConfig, showDetections, tileSource,
} from "./common.js";
import "./embed.css";

const config = readConfig();
const state = { imageId: null, lngLat: null, imageEvents: [], focus: "photo" };
const viewer = createViewer(config, document.getElementById("viewer"), config.image.id);
viewer.on("image", (event) => { state.imageEvents.push(event.image.id); });
// Detections are drawn with their own state: the map's `state.imageId` is set by followViewer.
const seen = { imageId: null, detections: [] };
showDetections(viewer, config, seen);
window.wayview = { config, state, viewer, map: null, NavigationDirection, seen };

if (config.style !== "photo") {
  const map = createMap(config, document.getElementById("map"), {
    center: [config.image.lng, config.image.lat],
    zoom: 17,
    sources: { mly: tileSource(config, "mly1_public") },
    layers: coverageLayers("mly"),
  });
  window.wayview.map = map;
  map.on("load", () => {
    addCurrentImageLayers(map);
    followViewer(viewer, map, state);
    clickImages(map, (id) => viewer.moveTo(id).catch(() => {}));
    window.wayview.mapLoaded = true;
  });
  const resize = () => { map.resize(); viewer.resize(); };
  window.addEventListener("resize", resize);
  const toggle = document.getElementById("switch");
  if (toggle) {
    toggle.addEventListener("click", () => {
      state.focus = state.focus === "photo" ? "map" : "photo";
      document.body.dataset.focus = state.focus;
      toggle.textContent = state.focus === "photo" ? "Show map" : "Show photo";
      resize();
    });
  }
}
