// Decode Mapbox Vector Tiles the way iD 2.42 does (modules/services/mapillary.js):
//   new VectorTile(new Pbf(arrayBuffer)), then per layer `layer.feature(i)` and
//   `feature.toGeoJSON(x, y, z)`, reading `feature.properties.*`.
//
// Usage: node decode.mjs '<json>' where <json> is a list of jobs
//   {"file": "/path/tile.mvt", "z": 14, "x": 8792, "y": 5125}   decode bytes already fetched, or
//   {"url": "http://127.0.0.1:P/maps/vtp/…", "z": 14, …}        fetch it first, as iD does
//                                                               (browser-style fetch: gzip accepted
//                                                               and inflated transparently).
// Prints one JSON list on stdout, one entry per job:
//   {status, contentType, contentEncoding, byteLength,
//    layers: {name: {version, extent, length,
//                    features: [{id, type, extent, properties, geometry, geojson}]}}}
// `geometry` is loadGeometry() as [[[x, y], …], …] (tile coordinates); `geojson` is
// toGeoJSON(x, y, z). Numbers above 2^53 would lose precision here exactly as in iD.

import { readFile } from 'node:fs/promises';
import { VectorTile } from '@mapbox/vector-tile';
import { PbfReader as Pbf } from 'pbf';

async function load(job) {
  if (job.file) {
    const bytes = await readFile(job.file);
    return { status: null, contentType: null, contentEncoding: null,
             data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) };
  }
  const response = await fetch(job.url, { signal: AbortSignal.timeout(job.timeoutMs ?? 10000) });
  const data = await response.arrayBuffer();
  return { status: response.status, contentType: response.headers.get('content-type'),
           contentEncoding: response.headers.get('content-encoding'), data };
}

function decode(data, job) {
  const tile = new VectorTile(new Pbf(data));
  const layers = {};
  for (const [name, layer] of Object.entries(tile.layers)) {
    const features = [];
    for (let i = 0; i < layer.length; i++) {
      const feature = layer.feature(i);
      features.push({
        id: feature.id ?? null,
        type: feature.type,
        extent: feature.extent,
        properties: feature.properties,
        geometry: feature.loadGeometry().map((ring) => ring.map((p) => [p.x, p.y])),
        geojson: feature.toGeoJSON(job.x, job.y, job.z),
      });
    }
    layers[name] = { version: layer.version, extent: layer.extent, length: layer.length, features };
  }
  return layers;
}

const jobs = JSON.parse(process.argv[2]);
const out = [];
for (const job of jobs) {
  const { data, ...meta } = await load(job);
  out.push({ ...meta, byteLength: data.byteLength, layers: decode(data, job) });
}
process.stdout.write(JSON.stringify(out));
