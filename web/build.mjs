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

// 1. The two pages: ES modules sharing chunks (MapLibre, MapillaryJS), CSS beside each entry.
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { embed: "src/embed.js", app: "src/app.js" },
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

writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`web build: ${Object.keys(manifest).length} entries, ${sprites.length} sprites -> ${relative(process.cwd(), out)}`);
