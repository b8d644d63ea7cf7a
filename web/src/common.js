// Shared by the /embed page and the /app explorer: the page's configuration, the MapillaryJS
// viewer pointed at this server, and the MapLibre map drawing this server's vector tiles.
// Everything comes from this server (the built-in base map too; no glyphs, no CDN): the pages
// work offline. An operator may name a base map style of their own (`web.basemap_style_url`).
import { Map as MapLibreMap, setWorkerUrl } from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import { GraphDataProvider, OutlineTag, PolygonGeometry, Viewer } from "mapillary-js";
import "mapillary-js/dist/mapillary.css";
import "./common.css";

export const GREEN = "#05cb63";
export const HIGHLIGHT = "#ff6f00";
/** Zoom from which the `image` layer exists (spec §4.2). */
export const IMAGE_MIN_ZOOM = 14;
/** The deepest zoom the server renders; MapLibre overzooms beyond it. */
export const TILE_MAX_ZOOM = 14;

/** The JSON the server put into <script id="wayview-config">. */
export function readConfig() {
  const node = document.getElementById("wayview-config");
  return JSON.parse(node.textContent);
}

/** A vector tile source of one of this server's tilesets. */
export function tileSource(config, tileset, minzoom = 0) {
  const token = encodeURIComponent(config.token);
  return {
    type: "vector",
    tiles: [`${config.base}/maps/vtp/${tileset}/2/{z}/{x}/{y}?access_token=${token}`],
    minzoom,
    maxzoom: TILE_MAX_ZOOM,
  };
}

/** The coverage layers of `mly1_public`: sequence lines, overview points, image points. */
export function coverageLayers(source) {
  return [
    {
      id: "sequences", type: "line", source, "source-layer": "sequence",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": GREEN, "line-width": ["interpolate", ["linear"], ["zoom"], 6, 1, 18, 4],
               "line-opacity": 0.8 },
    },
    {
      id: "overview", type: "circle", source, "source-layer": "overview", maxzoom: 6,
      paint: { "circle-color": GREEN, "circle-radius": 3, "circle-opacity": 0.8 },
    },
    {
      id: "images", type: "circle", source, "source-layer": "image", minzoom: IMAGE_MIN_ZOOM,
      paint: {
        "circle-color": GREEN,
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 14, 3, 18, 7],
        "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5,
      },
    },
  ];
}

/** The offline base map: sea, land and country borders (Natural Earth 1:50m, built in). */
function offlineBase(config) {
  const attribution = "Natural Earth";
  return {
    sources: {
      "base-land": { type: "geojson", data: config.basemap.land, attribution },
      "base-borders": { type: "geojson", data: config.basemap.borders, attribution },
    },
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#c9dff0" } },
      { id: "base-land", type: "fill", source: "base-land", paint: { "fill-color": "#f2f1ec" } },
      { id: "base-borders", type: "line", source: "base-borders",
        paint: { "line-color": "#a9a49a", "line-width": 0.8, "line-dasharray": [3, 2] } },
    ],
  };
}

/** A map of our layers over a base map: the operator's style (`web.basemap_style_url`, any
 *  origin) or the offline one built in, so the map is never an empty grey. */
export function createMap(config, container, { center, zoom, sources, layers }) {
  setWorkerUrl(config.workerUrl);
  const options = {
    container, center, zoom, attributionControl: { compact: true },
  };
  if (config.basemapStyleUrl) {
    const map = new MapLibreMap({ ...options, style: config.basemapStyleUrl });
    map.once("style.load", () => {
      for (const [id, source] of Object.entries(sources)) map.addSource(id, source);
      for (const layer of layers) map.addLayer(layer);
    });
    return map;
  }
  const base = offlineBase(config);
  return new MapLibreMap({
    ...options,
    style: { version: 8, sources: { ...base.sources, ...sources },
             layers: [...base.layers, ...layers] },
  });
}

/** The current image: a dot and a heading wedge, drawn from a GeoJSON source. */
export function addCurrentImageLayers(map) {
  map.addSource("current", { type: "geojson", data: emptyCollection() });
  map.addLayer({
    id: "current-heading", type: "fill", source: "current", filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": HIGHLIGHT, "fill-opacity": 0.35 },
  });
  map.addLayer({
    id: "current-image", type: "circle", source: "current", filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-color": HIGHLIGHT, "circle-radius": 8, "circle-stroke-color": "#ffffff",
             "circle-stroke-width": 2 },
  });
}

export function emptyCollection() {
  return { type: "FeatureCollection", features: [] };
}

/** A point and a 60° wedge of `radius_m` metres towards `bearing` (degrees from north). */
export function currentImageData(lngLat, bearing, radiusM = 12) {
  const features = [{ type: "Feature", properties: {}, geometry: { type: "Point", coordinates: [lngLat.lng, lngLat.lat] } }];
  if (Number.isFinite(bearing)) {
    const ring = [[lngLat.lng, lngLat.lat]];
    const mPerDegLat = 111320;
    const mPerDegLng = mPerDegLat * Math.cos((lngLat.lat * Math.PI) / 180);
    for (let a = bearing - 30; a <= bearing + 30; a += 5) {
      const r = (a * Math.PI) / 180;
      ring.push([lngLat.lng + (Math.sin(r) * radiusM) / mPerDegLng,
                 lngLat.lat + (Math.cos(r) * radiusM) / mPerDegLat]);
    }
    ring.push([lngLat.lng, lngLat.lat]);
    features.unshift({ type: "Feature", properties: {}, geometry: { type: "Polygon", coordinates: [ring] } });
  }
  return { type: "FeatureCollection", features };
}

/** A MapillaryJS viewer reading this server through its GraphDataProvider (spec §10.3); its
 * attribution links to the image's page on this server, /app/?pKey=<id>&focus=photo. */
export function createViewer(config, container, imageId) {
  const url = new URL(config.base);
  return new Viewer({
    container,
    imageId,
    dataProvider: new GraphDataProvider({ endpoint: `${config.base}/`, accessToken: config.token }),
    component: { cover: false },
    url: { exploreHost: url.host, scheme: url.protocol.replace(":", "") },
  });
}

/** Follow the viewer on the map: centre, highlight and heading of the current image. */
export function followViewer(viewer, map, state) {
  const update = async () => {
    const [lngLat, bearing] = await Promise.all([viewer.getPosition(), viewer.getBearing()]);
    state.lngLat = lngLat;
    const source = map.getSource("current");
    if (source) source.setData(currentImageData(lngLat, bearing));
    return lngLat;
  };
  const onImage = async (image) => {
    state.imageId = image.id;
    if (map.getLayer("images")) {
      map.setPaintProperty("images", "circle-color",
        ["case", ["==", ["to-string", ["get", "id"]], image.id], HIGHLIGHT, GREEN]);
    }
    // The image event comes as the transition starts: centre on where it ends.
    map.easeTo({ center: image.lngLat, duration: 300 });
    await update();
  };
  viewer.on("image", (event) => onImage(event.image));
  // The viewer may have shown its first image before the map was ready.
  viewer.getImage().then((image) => { if (image && state.imageId === null) onImage(image); })
    .catch(() => {});
  viewer.on("position", update);
  viewer.on("bearing", update);
}

/** Clicking an image marker moves the viewer (or calls `open(id)`). */
export function clickImages(map, open) {
  map.on("click", "images", (event) => {
    const feature = event.features && event.features[0];
    if (feature) open(String(feature.properties.id));
  });
  map.on("mouseenter", "images", () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", "images", () => { map.getCanvas().style.cursor = ""; });
}

// -- detections on the photo ----------------------------------------------------------------

/** Read a protobuf varint at `pos`: [value, next position]. */
function varint(bytes, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, pos];
    shift += 7;
  }
}

/** The fields of one protobuf message: [field number, wire type, value or bytes]. */
function fields(bytes) {
  const out = [];
  let pos = 0;
  while (pos < bytes.length) {
    let key;
    [key, pos] = varint(bytes, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      let v;
      [v, pos] = varint(bytes, pos);
      out.push([field, wire, v]);
    } else if (wire === 2) {
      let length;
      [length, pos] = varint(bytes, pos);
      out.push([field, wire, bytes.subarray(pos, pos + length)]);
      pos += length;
    } else if (wire === 5) { pos += 4; } else if (wire === 1) { pos += 8; } else { break; }
  }
  return out;
}

/**
 * A detection's `geometry` (spec §5: base64 of a Mapbox Vector Tile, extent 4096, origin top
 * left) as rings of [x, y] in 0..1 image coordinates, each ring closed.
 */
export function decodeDetectionGeometry(base64) {
  const raw = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const rings = [];
  for (const [tileField, , layer] of fields(raw)) {
    if (tileField !== 3) continue;
    const layerFields = fields(layer);
    const extentField = layerFields.find(([f]) => f === 5);
    const extent = extentField ? extentField[2] : 4096;
    for (const [layerField, , feature] of layerFields) {
      if (layerField !== 2) continue;
      for (const [featureField, , geometry] of fields(feature)) {
        if (featureField !== 4) continue;
        const ints = [];
        for (let pos = 0; pos < geometry.length;) {
          let v;
          [v, pos] = varint(geometry, pos);
          ints.push(v);
        }
        let x = 0;
        let y = 0;
        let ring = [];
        for (let i = 0; i < ints.length;) {
          const command = ints[i] & 7;
          const count = Math.floor(ints[i] / 8);
          i += 1;
          if (command === 7) {
            if (ring.length) { ring.push(ring[0]); rings.push(ring); ring = []; }
            continue;
          }
          for (let k = 0; k < count; k++) {
            const dx = ints[i++];
            const dy = ints[i++];
            x += (dx >>> 1) ^ -(dx & 1);
            y += (dy >>> 1) ^ -(dy & 1);
            if (command === 1 && ring.length) { ring.push(ring[0]); rings.push(ring); ring = []; }
            ring.push([Math.min(1, Math.max(0, x / extent)), Math.min(1, Math.max(0, y / extent))]);
          }
        }
        if (ring.length) { ring.push(ring[0]); rings.push(ring); }
      }
    }
  }
  return rings;
}

/**
 * Outline every detection of the current image on the photo (MapillaryJS tag component),
 * labelled with its value. `state.detections` holds what is drawn (tests, debugging).
 */
export function showDetections(viewer, config, state) {
  viewer.activateComponent("tag");
  const tags = viewer.getComponent("tag");
  state.detections = [];
  const draw = async (imageId) => {
    const token = encodeURIComponent(config.token);
    let rows = [];
    try {
      const response = await fetch(
        `${config.base}/${imageId}/detections?fields=id,value,geometry&access_token=${token}`);
      if (response.ok) rows = (await response.json()).data || [];
    } catch (error) {
      rows = [];
    }
    if (state.imageId !== null && state.imageId !== imageId) return;  // moved on meanwhile
    const outlines = [];
    const drawn = [];
    for (const row of rows) {
      const rings = decodeDetectionGeometry(row.geometry);
      if (!rings.length || rings[0].length < 4) continue;
      outlines.push(new OutlineTag(`det-${row.id}`, new PolygonGeometry(rings[0]), {
        lineColor: 0xff6f00, lineWidth: 3, text: row.value, textColor: 0xff6f00,
      }));
      drawn.push({ id: row.id, value: row.value, ring: rings[0] });
    }
    tags.removeAll();
    if (outlines.length) tags.add(outlines);
    state.detections = drawn;
  };
  viewer.on("image", (event) => { state.imageId = event.image.id; draw(event.image.id); });
  viewer.getImage().then((image) => { if (image) draw(image.id); }).catch(() => {});
}
