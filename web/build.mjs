// Builds the /embed page and the /app explorer into src/wayview/api/static/dist (issue #6).
//
// `npm ci && npm run build` (the Makefile runs it when these sources or the lock file change).
// Every file written is named by its content hash, so the server can send
// `Cache-Control: immutable`; manifest.json maps logical names to the hashed ones and is read
// by the server only (never served). Nothing here or in the bundles refers to a CDN.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "wayview", "api", "static", "dist");
const modules = join(here, "node_modules");

const hash = (...buffers) => {
  const h = createHash("sha256");
  for (const b of buffers) h.update(b);
  return h.digest("hex").slice(0, 10);
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// 1. The pages (embed, app, upload, profile): ES modules sharing chunks (MapLibre, MapillaryJS), CSS beside each entry.
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: {
    embed: "src/embed.js", app: "src/app.js", upload: "src/upload.js", profile: "src/profile.js",
  },
  outdir: out,
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});
const manifest = {};
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (!info.entryPoint) continue;
  const name = info.entryPoint.replace(/^src\//, "").replace(/\.js$/, "");
  manifest[`${name}.js`] = relative(out, join(here, file));
  if (info.cssBundle) manifest[`${name}.css`] = relative(out, join(here, info.cssBundle));
}

// 2. MapLibre's web worker (a self-contained ES module the map starts with setWorkerUrl).
const workerSource = join(modules, "maplibre-gl", "dist", "maplibre-gl-worker.mjs");
const workerName = `maplibre-gl-worker-${hash(readFileSync(workerSource))}.mjs`;
copyFileSync(workerSource, join(out, workerName));
manifest.worker = workerName;

// 3. The Mapillary sprites (SVG per traffic sign / object value), in a folder named by the
//    hash of all of them.
const spriteDirs = ["package_signs", "package_objects"].map(
  (d) => join(modules, "@rapideditor", "mapillary_sprite_source", d));
const sprites = [];
for (const dir of spriteDirs) {
  for (const name of readdirSync(dir).sort()) {
    if (name.endsWith(".svg")) sprites.push([name, join(dir, name)]);
  }
}
const spriteHash = hash(...sprites.flatMap(([name, path]) => [name, readFileSync(path)]));
const spriteFolder = `sprites-${spriteHash}`;
mkdirSync(join(out, spriteFolder));
for (const [name, path] of sprites) copyFileSync(path, join(out, spriteFolder, name));
manifest.sprites = spriteFolder;
// Their names: the taxonomy /app's map-feature value picker offers (issue #18 item 3).
const names = JSON.stringify(sprites.map(([name]) => name.replace(/\.svg$/, "")));
const namesFile = `sprite-names-${hash(names)}.json`;
writeFileSync(join(out, namesFile), names);
manifest.sprite_names = namesFile;

// 4. The offline base map (issue #18): land and country borders of Natural Earth (public
//    domain) at 1:50m, from the npm package world-atlas (ISC), as GeoJSON with coordinates
//    rounded to 1e-3 degrees (~100 m: finer than the data).
const { feature, mesh } = await import("topojson-client");
const world = JSON.parse(readFileSync(join(modules, "world-atlas", "countries-50m.json"), "utf8"));
const round = (value) => (Array.isArray(value) ? value.map(round) : Math.round(value * 1000) / 1000);
const shrink = (geojson) => JSON.stringify(geojson, (key, value) =>
  (key === "coordinates" ? round(value) : value));
// A ring that crosses the antimeridian and comes back (Russia, Fiji) jumps ±360° twice in
// world-atlas; drawn as is it spans the whole world and fills tiles over the sea. Made
// continuous (longitudes beyond ±180), MapLibre draws it across the antimeridian. Rings
// around a pole (Antarctica: one jump) are left as they are.
const unwrapRing = (ring) => {
  const jumps = ring.filter((p, i) => i > 0 && Math.abs(p[0] - ring[i - 1][0]) > 180).length;
  if (jumps === 0 || jumps % 2 === 1) return ring;
  const out = [];
  for (const [x, y] of ring) {
    let lon = x;
    if (out.length) {
      const previous = out[out.length - 1][0];
      while (lon - previous > 180) lon -= 360;
      while (lon - previous < -180) lon += 360;
    }
    out.push([lon, y]);
  }
  return out;
};
const unwrapped = (collection) => {
  for (const f of collection.features) {
    const g = f.geometry;
    if (g?.type === "Polygon") g.coordinates = g.coordinates.map(unwrapRing);
    if (g?.type === "MultiPolygon") g.coordinates = g.coordinates.map((poly) => poly.map(unwrapRing));
  }
  return collection;
};
for (const [key, geojson] of [
  // Country by country: the one merged "land" polygon fills whole tiles over the sea.
  ["basemap_land", unwrapped(feature(world, world.objects.countries))],
  ["basemap_borders", mesh(world, world.objects.countries, (a, b) => a !== b)],
]) {
  const body = shrink(geojson);
  const name = `${key.replace("basemap_", "basemap-")}-${hash(body)}.json`;
  writeFileSync(join(out, name), body);
  manifest[key] = name;
}

writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`web build: ${Object.keys(manifest).length} entries, ${sprites.length} sprites -> ${relative(process.cwd(), out)}`);
