// GET /upload: upload photos from the browser (issue #18 item 5).
//
// 1. Check: every dropped or chosen file is read here first. JPEGs need a GPS position and a
//    capture time (upload-exif.js, the server's rules); zips are opened in the browser
//    (upload-zip.js) and each photo inside is checked alike. Bad files are listed with their
//    reason and never sent; the same photo twice is sent once.
// 2. Group: good photos are ordered by capture time and cut into sequences where the server's
//    `wayview import` would cut them (time gap, distance jump, camera change, length), each
//    sequence one upload ("batch").
// 3. Keep: batches and their photos (Blobs) go to IndexedDB (upload-store.js), so a reload
//    or a closed tab continues where it stopped.
// 4. Send: through the upload service mapillary_tools uses. Each photo is one session named by
//    its SHA-256 (`wayview_web_<sha256>.jpg`): GET gives the bytes the server holds, POST
//    sends the rest with `Offset`; then a bundle manifest of the handles and POST
//    /finish_upload (spec §8). The token is a short-lived upload-only user token the page
//    gets with its session and CSRF token (POST /account/upload-token), held in memory only.
// 5. Follow: GET /account/uploads/{cluster_id} until the server has made the sequence, then
//    show it on a map of this server's coverage, with a link to it in /app.
import { coverageLayers, createMap, HIGHLIGHT, readConfig, tileSource } from "./common.js";
import { checkPhoto, megabytes, sniffKind } from "./upload-exif.js";
import { sha256Hex } from "./upload-hash.js";
import { MemoryStore, openStore } from "./upload-store.js";
import { isNoise, zipEntries, zipMember } from "./upload-zip.js";
import "./upload.css";

const config = readConfig();
const up = config.upload;
const USER = up.user.id;
/** Photos sent at once. */
const PARALLEL = 3;
/** Largest body of one POST; a larger photo is sent in several (each resumable). */
const CHUNK_BYTES = 32 * 1024 * 1024;
/** Attempts per session before a photo is marked failed (mapillary_tools: 200). */
const MAX_ATTEMPTS = 200;
const POLL_MS = 2000;
const SLOW_POLL_MS = 5000;

const $ = (id) => document.getElementById(id);
const state = {
  store: null,
  memory: new MemoryStore(), // batches IndexedDB could not keep
  batches: new Map(), // id -> batch record
  photos: new Map(), // key -> photo record
  views: new Map(), // batch id -> {root, rows: Map(photo key -> row)}
  rejected: [],
  token: null,
  tokenExpires: 0,
  tokenPromise: null,
  paused: null, // a message while uploads wait for the user (signed out)
  running: 0,
  map: null,
  mapReady: false,
  onMap: new Set(), // sequence ids the map's tiles draw
};
window.wayviewUpload = { state, get map() { return state.map; } };

// -- small helpers --------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function when(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function storeOf(batch) {
  return batch.volatile ? state.memory : state.store;
}

class UploadError extends Error {
  constructor(message, { status = 0, retriable = true, retryAfterS = null, paused = false } = {}) {
    super(message);
    this.status = status;
    this.retriable = retriable;
    this.retryAfterS = retryAfterS;
    this.paused = paused;
  }
}

function retryAfter(res) {
  const value = res.headers.get("retry-after");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds;
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, (date - Date.now()) / 1000) : null;
}

/** An error from an answer of the upload service (its envelope) or of a Graph endpoint. */
async function answerError(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const info = body && (body.debug_info || body.error) || {};
  const message = typeof info.message === "string" ? info.message : `HTTP ${res.status}`;
  const retriable = info.retriable === true || res.status >= 500 || res.status === 429
    || res.status === 412 || res.status === 401;
  return new UploadError(message, { status: res.status, retriable, retryAfterS: retryAfter(res) });
}

// -- the upload token -----------------------------------------------------------------------

function pause(message) {
  state.paused = message;
  renderOverall();
  return new UploadError(message, { paused: true });
}

async function mintToken() {
  let res;
  try {
    res = await fetch(up.tokenUrl, { method: "POST", credentials: "same-origin", cache: "no-store",
                                     headers: { "X-CSRF-Token": up.csrf } });
  } catch {
    throw new UploadError("the server cannot be reached");
  }
  if (res.status === 401) throw pause("signed-out");
  if (res.status === 403) throw pause("reload");
  if (!res.ok) throw await answerError(res);
  const body = await res.json();
  state.token = body.access_token;
  state.tokenExpires = Date.now() + body.expires_in * 1000;
  return state.token;
}

async function token() {
  if (state.paused) throw new UploadError(state.paused, { paused: true });
  if (state.token && Date.now() < state.tokenExpires - 120_000) return state.token;
  if (!state.tokenPromise) state.tokenPromise = mintToken().finally(() => { state.tokenPromise = null; });
  return state.tokenPromise;
}

function forgetToken(used) {
  if (state.token === used) state.token = null;
}

// -- the upload service ---------------------------------------------------------------------

function sessionUrl(key) {
  return `${up.prefix}/${encodeURIComponent(key)}`;
}

async function heldOffset(key, auth) {
  let res;
  try {
    res = await fetch(sessionUrl(key), { headers: { Authorization: `OAuth ${auth}` }, cache: "no-store" });
  } catch {
    throw new UploadError("the server cannot be reached");
  }
  if (!res.ok) throw await answerError(res);
  const body = await res.json();
  return Number(body.offset) || 0;
}

/** POST bytes at `offset` with upload progress (XMLHttpRequest: fetch reports none). */
function postBytes(key, body, offset, total, auth, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", sessionUrl(key));
    xhr.setRequestHeader("Authorization", `OAuth ${auth}`);
    xhr.setRequestHeader("Offset", String(offset));
    xhr.setRequestHeader("X-Entity-Name", key);
    xhr.setRequestHeader("X-Entity-Length", String(total));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status === 200 && xhr.response && typeof xhr.response.h === "string") {
        resolve(xhr.response.h);
        return;
      }
      const info = (xhr.response && xhr.response.debug_info) || {};
      const retriable = info.retriable === true || xhr.status >= 500 || xhr.status === 429
        || xhr.status === 412 || xhr.status === 401;
      const after = Number(xhr.getResponseHeader("retry-after"));
      reject(new UploadError(info.message || `HTTP ${xhr.status}`, {
        status: xhr.status, retriable, retryAfterS: Number.isFinite(after) && after > 0 ? after : null }));
    };
    xhr.onerror = () => reject(new UploadError("the connection was lost"));
    xhr.onabort = () => reject(new UploadError("the upload was interrupted"));
    xhr.send(body);
  });
}

/**
 * Send a Blob into session `key`, resuming at what the server holds; its file handle.
 * `onProgress(sentBytes, {resumedFrom})` follows the bytes; `onWait(message)` says why it
 * waits. Retries what the service calls retriable (spec §8.6); throws UploadError otherwise.
 */
async function sendBlob(key, blob, onProgress, onWait = () => {}) {
  let attempts = 0;
  let first = true;
  for (;;) {
    let auth = null;
    try {
      auth = await token();
      let offset = await heldOffset(key, auth);
      onProgress(Math.min(offset, blob.size), { resumedFrom: first ? offset : null });
      first = false;
      onWait(null);
      if (offset >= blob.size) {
        return await postBytes(key, new Blob([]), blob.size, blob.size, auth, () => {});
      }
      let handle = null;
      while (offset < blob.size) {
        const end = Math.min(blob.size, offset + CHUNK_BYTES);
        const start = offset;
        handle = await postBytes(key, blob.slice(start, end), start, blob.size, auth,
                                 (loaded) => onProgress(start + loaded, {}));
        offset = end;
      }
      return handle;
    } catch (error) {
      if (!(error instanceof UploadError) || error.paused) throw error;
      if (!error.retriable) throw error;
      if (error.status === 401) forgetToken(auth);
      attempts += 1;
      if (attempts >= MAX_ATTEMPTS) {
        throw new UploadError(`gave up after ${attempts} attempts: ${error.message}`, { retriable: false });
      }
      if (error.status === 412) continue; // someone else moved the offset: read it again
      const waitS = error.retryAfterS ?? Math.min(2 ** Math.min(attempts, 4), 16);
      onWait(`${error.message}; trying again in ${Math.round(waitS)} s`);
      await sleep(waitS * 1000);
    }
  }
}

async function finishUpload(handle, organizationId) {
  let attempts = 0;
  for (;;) {
    let auth = null;
    try {
      auth = await token();
      const body = { file_handle: handle, file_type: "mly_bundle_manifest" };
      if (organizationId) body.organization_id = organizationId;
      let res;
      try {
        res = await fetch(up.finishUrl, {
          method: "POST", cache: "no-store", body: JSON.stringify(body),
          headers: { Authorization: `OAuth ${auth}`, "Content-Type": "application/json" },
        });
      } catch {
        throw new UploadError("the server cannot be reached");
      }
      if (!res.ok) throw await answerError(res);
      return String((await res.json()).cluster_id);
    } catch (error) {
      if (!(error instanceof UploadError) || error.paused || !error.retriable) throw error;
      if (error.status === 401) forgetToken(auth);
      attempts += 1;
      if (attempts >= MAX_ATTEMPTS) throw new UploadError(error.message, { retriable: false });
      await sleep(1000 * (error.retryAfterS ?? Math.min(2 ** Math.min(attempts, 4), 16)));
    }
  }
}

// -- reading what was dropped ---------------------------------------------------------------

function reject(name, reason) {
  state.rejected.push({ name, reason });
}

async function candidatesOf(files) {
  const out = [];
  for (const file of files) {
    const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    const kind = sniffKind(head);
    if (kind === "zip") {
      await zipCandidates(file, out);
    } else if (/\.zip$/i.test(file.name) && kind !== "jpeg") {
      reject(file.name, "not a zip file (or a damaged one)");
    } else {
      out.push({ name: file.name, blob: file });
    }
  }
  return out;
}

async function zipCandidates(file, out) {
  let entries;
  try {
    entries = await zipEntries(file, 2 * up.maxImages + 100);
  } catch (error) {
    reject(file.name, error.message);
    return;
  }
  let photos = 0;
  for (const entry of entries) {
    if (isNoise(entry.name)) continue;
    const name = `${file.name} › ${entry.name}`;
    if (!/\.jpe?g$/i.test(entry.name)) {
      reject(name, "not a JPEG photo");
      continue;
    }
    if (entry.size > up.maxImageBytes) {
      reject(name, `too large: ${megabytes(entry.size)} (this server takes photos up to ${megabytes(up.maxImageBytes)})`);
      continue;
    }
    try {
      out.push({ name, blob: await zipMember(file, entry) });
      photos += 1;
    } catch (error) {
      reject(name, error.message);
    }
  }
  if (photos === 0 && !state.rejected.some((r) => r.name.startsWith(`${file.name} › `))) {
    reject(file.name, "the zip holds no photos");
  }
}

/** Cut checked photos into sequences as the server's import does (wayview.ingest.sequencing). */
function sequencesOf(photos) {
  const ordered = [...photos].sort((a, b) => a.capturedAtMs - b.capturedAtMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out = [];
  let current = [];
  for (const photo of ordered) {
    const last = current[current.length - 1];
    if (last && (current.length >= up.maxSequenceLength
        || (photo.capturedAtMs - last.capturedAtMs) / 1000 > up.maxTimeGapS
        || photo.make !== last.make || photo.model !== last.model
        || distanceM(last, photo) > up.maxDistanceGapM)) {
      out.push(current);
      current = [];
    }
    current.push(photo);
  }
  if (current.length) out.push(current);
  return out;
}

function distanceM(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(h)));
}

async function addFiles(files) {
  if (!files.length) return;
  setBusy(`Checking ${files.length} file${files.length === 1 ? "" : "s"}…`);
  const rejectedBefore = state.rejected.length;
  const good = [];
  const seen = new Map(); // sha -> name, within this drop
  try {
    const candidates = await candidatesOf(files);
    for (const [n, candidate] of candidates.entries()) {
      if (n % 10 === 0 && candidates.length > 10) setBusy(`Checking photo ${n + 1} of ${candidates.length}…`);
      const meta = await checkPhoto(candidate.blob, up.maxImageBytes);
      if (!meta.ok) {
        reject(candidate.name, meta.reason);
        continue;
      }
      const sha = await sha256Hex(candidate.blob);
      const key = `${USER}:${sha}`;
      if (seen.has(sha)) {
        reject(candidate.name, `the same photo as ${seen.get(sha)}`);
        continue;
      }
      seen.set(sha, candidate.name);
      if (state.photos.has(key)) {
        reject(candidate.name, "already in the uploads below");
        continue;
      }
      good.push({ ...meta, key, sha, name: candidate.name, blob: candidate.blob });
    }
  } catch (error) {
    reject("(the dropped files)", `could not be read: ${error.message}`);
  }
  const organizationId = $("organization") ? $("organization").value || null : null;
  const batches = [];
  const photos = [];
  const stamp = Date.now();
  sequencesOf(good).forEach((sequence, n) => {
    const id = `${USER}:${stamp}-${n}-${Math.random().toString(36).slice(2, 10)}`;
    const batch = {
      id, userId: USER, createdAt: stamp + n, state: "uploading", organizationId,
      photoKeys: sequence.map((p) => p.key), names: sequence.map((p) => p.name),
      bytes: sequence.reduce((sum, p) => sum + p.blob.size, 0),
      firstMs: sequence[0].capturedAtMs, lastMs: sequence[sequence.length - 1].capturedAtMs,
      clusterId: null, result: null, error: null, volatile: false,
    };
    batches.push(batch);
    for (const p of sequence) {
      photos.push({ key: p.key, userId: USER, batchId: id, sha: p.sha, name: p.name, size: p.blob.size,
                    blob: p.blob, capturedAtMs: p.capturedAtMs, lat: p.lat, lon: p.lon });
    }
  });
  if (batches.length) {
    try {
      if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
      await state.store.putAll(batches, photos);
    } catch {
      for (const b of batches) b.volatile = true; // storage full or refused: this tab only
      await state.memory.putAll(batches, photos);
    }
    for (const p of photos) state.photos.set(p.key, { ...p, state: "waiting", handle: null, error: null });
    for (const b of batches) {
      state.batches.set(b.id, b);
      renderBatch(b);
    }
  }
  renderRejected();
  const refused = state.rejected.length - rejectedBefore;
  setBusy(null, good.length
    ? `${good.length} photo${good.length === 1 ? "" : "s"} added in ${batches.length} sequence${batches.length === 1 ? "" : "s"}${refused ? `; ${refused} file${refused === 1 ? "" : "s"} not uploaded (see the list)` : ""}.`
    : `Nothing to upload${refused ? `: ${refused} file${refused === 1 ? "" : "s"} not usable (see the list)` : ""}.`);
  pump();
}

// -- the work loop --------------------------------------------------------------------------

function batchPhotos(batch) {
  return batch.photoKeys.map((k) => state.photos.get(k)).filter(Boolean);
}

function nextPhoto() {
  for (const batch of sortedBatches()) {
    if (batch.state !== "uploading") continue;
    for (const photo of batchPhotos(batch)) {
      if (photo.state === "waiting" && !photo.busy) return photo;
    }
  }
  return null;
}

function sortedBatches() {
  return [...state.batches.values()].sort((a, b) => a.createdAt - b.createdAt);
}

function pump() {
  if (state.paused) return;
  while (state.running < PARALLEL) {
    const photo = nextPhoto();
    if (!photo) break;
    state.running += 1;
    photo.busy = true;
    uploadPhoto(photo).finally(() => {
      state.running -= 1;
      photo.busy = false;
      pump();
    });
  }
  for (const batch of sortedBatches()) {
    if (batch.state === "uploading" && !batch.busy
        && batchPhotos(batch).every((p) => !p.busy && (p.state === "done" || p.state === "failed"))) {
      advance(batch, finishBatch);
    } else if (batch.state === "finishing" && !batch.busy) {
      advance(batch, finishBatch);
    } else if (batch.state === "processing" && !batch.busy) {
      advance(batch, follow);
    }
  }
  renderOverall();
}

function advance(batch, step) {
  batch.busy = true;
  step(batch).catch((error) => {
    if (!(error instanceof UploadError && error.paused)) {
      batch.state = "failed";
      batch.error = error.message;
      save(batch);
    }
  }).finally(() => {
    batch.busy = false;
    renderBatch(batch);
    renderOverall();
  });
}

async function save(batch) {
  const { busy, ...record } = batch;
  try { await storeOf(batch).putBatch(record); } catch { /* kept in memory */ }
}

/** A photo's progress lives in its batch's record (`photoState`): the photo records, which
 *  hold the Blobs, are written once. */
async function savePhoto(photo) {
  const batch = state.batches.get(photo.batchId);
  if (!batch) return;
  batch.photoState = { ...(batch.photoState || {}),
                       [photo.key]: { state: photo.state, handle: photo.handle, error: photo.error } };
  await save(batch);
}

async function uploadPhoto(photo) {
  const view = () => rowOf(photo);
  try {
    photo.handle = await sendBlob(`wayview_web_${photo.sha}.jpg`, photo.blob, (sent, { resumedFrom }) => {
      photo.sent = sent;
      if (resumedFrom) photo.resumedFrom = resumedFrom;
      scheduleProgress(photo);
    }, (wait) => { photo.wait = wait; scheduleProgress(photo); });
    photo.state = "done";
    photo.sent = photo.size;
  } catch (error) {
    if (error instanceof UploadError && error.paused) return;
    photo.state = "failed";
    photo.error = error.message;
  }
  photo.wait = null;
  await savePhoto(photo);
  if (view()) updateRow(photo);
  const batch = state.batches.get(photo.batchId);
  if (batch && photo.state === "failed") renderBatch(batch); // offers Retry
  else if (batch) renderBatchStatus(batch);
}

async function finishBatch(batch) {
  const photos = batchPhotos(batch);
  const sent = photos.filter((p) => p.state === "done" && p.handle);
  if (!sent.length) {
    batch.state = "failed";
    batch.error = "none of its photos could be uploaded";
    await save(batch);
    return;
  }
  batch.state = "finishing";
  renderBatch(batch);
  const manifest = JSON.stringify({ image_handles: sent.map((p) => p.handle), upload_type: "images", version: "1" });
  const bytes = new TextEncoder().encode(manifest);
  const key = `wayview_web_${await sha256Hex(bytes)}.json`;
  const handle = await sendBlob(key, new Blob([bytes], { type: "application/json" }), () => {});
  batch.clusterId = await finishUpload(handle, batch.organizationId);
  batch.state = "processing";
  batch.failedNames = photos.filter((p) => p.state === "failed").map((p) => ({ name: p.name, reason: p.error }));
  await save(batch);
  // The server has every byte now: the browser's copies are no longer needed.
  try { await storeOf(batch).deletePhotos(batch.photoKeys); } catch { /* dropped with the batch */ }
  for (const k of batch.photoKeys) state.photos.delete(k);
  renderBatch(batch);
  await follow(batch);
}

async function follow(batch) {
  const started = Date.now();
  for (;;) {
    let res;
    try {
      res = await fetch(`${up.statusUrl}${batch.clusterId}`, { credentials: "same-origin", cache: "no-store" });
    } catch {
      res = null;
    }
    if (res && res.status === 401) throw pause("signed-out");
    if (res && res.status >= 400 && res.status < 500) {
      throw new UploadError((await answerError(res)).message, { retriable: false });
    }
    if (res && res.ok) {
      const body = await res.json();
      batch.serverState = body.state;
      if (body.state === "done") {
        batch.state = "done";
        batch.result = body;
        await save(batch);
        renderBatch(batch);
        showOnMap();
        return;
      }
      if (body.state === "failed") {
        batch.state = "failed";
        batch.error = body.error || "processing failed";
        await save(batch);
        return;
      }
      renderBatchStatus(batch);
    }
    await sleep(Date.now() - started > 60_000 ? SLOW_POLL_MS : POLL_MS);
  }
}

// -- the page -------------------------------------------------------------------------------

function setBusy(busy, message) {
  const zone = $("drop-zone");
  zone.toggleAttribute("aria-busy", Boolean(busy));
  $("drop-note").textContent = busy || message || "";
}

function renderOverall() {
  const node = $("overall");
  const batches = sortedBatches();
  let text;
  if (state.paused === "signed-out") {
    node.replaceChildren("Your session has ended: ",
      element("a", { href: "/signin?next=/upload", text: "sign in again" }),
      " and the uploads continue where they stopped.");
    node.dataset.state = "paused";
    return;
  }
  if (state.paused === "reload") {
    node.textContent = "This page has expired: reload it and the uploads continue where they stopped.";
    node.dataset.state = "paused";
    return;
  }
  const counts = (s) => batches.filter((b) => b.state === s).length;
  if (!batches.length) text = "Nothing uploading.";
  else if (counts("uploading") || counts("finishing")) {
    const photos = batches.flatMap(batchPhotos);
    const done = photos.filter((p) => p.state === "done").length;
    text = `Uploading: ${done} of ${photos.length} photos sent.`;
  } else if (counts("processing")) text = "Uploaded; the server is processing.";
  else text = "All uploads finished.";
  if ((state.store && !state.store.persistent) || batches.some((b) => b.volatile && b.state === "uploading")) {
    text += " This browser does not keep the photos: do not reload this page until they are sent.";
  }
  node.textContent = text;
  node.dataset.state = counts("uploading") || counts("finishing") ? "uploading"
    : counts("processing") ? "processing" : "idle";
}

/** The refused files survive a reload of this tab (sessionStorage), like the uploads. */
const REJECTED_KEY = `wayview-upload-rejected:${USER}`;

function keepRejected() {
  try { sessionStorage.setItem(REJECTED_KEY, JSON.stringify(state.rejected.slice(-500))); } catch { /* not kept */ }
}

function restoreRejected() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(REJECTED_KEY) || "[]");
    if (Array.isArray(kept)) state.rejected = kept.filter((r) => r && typeof r.name === "string" && typeof r.reason === "string");
  } catch { /* nothing kept */ }
}

function renderRejected() {
  keepRejected();
  const list = $("rejected");
  list.replaceChildren(...state.rejected.map((r) => element("li", {},
    element("span", { class: "name", text: r.name }), ": ", element("span", { class: "reason", text: r.reason }))));
  $("rejected-section").hidden = state.rejected.length === 0;
}

const STATE_LABEL = { waiting: "waiting", done: "sent", failed: "failed" };

function rowOf(photo) {
  const view = state.views.get(photo.batchId);
  return view ? view.rows.get(photo.key) : null;
}

function updateRow(photo) {
  const row = rowOf(photo);
  if (!row) return;
  const sent = photo.state === "done" ? photo.size : Math.min(photo.sent || 0, photo.size);
  row.dataset.state = photo.busy && photo.state === "waiting" ? "sending" : photo.state;
  if (photo.resumedFrom) row.dataset.resumedFrom = String(photo.resumedFrom);
  const bar = row.querySelector("progress");
  bar.max = photo.size;
  bar.value = sent;
  let label = STATE_LABEL[photo.state];
  if (photo.state === "waiting" && photo.busy) label = `${Math.floor((100 * sent) / photo.size)} %`;
  if (photo.resumedFrom && photo.state !== "failed") label += ` (resumed at ${megabytes(photo.resumedFrom)})`;
  if (photo.wait) label = photo.wait;
  if (photo.state === "failed") label = `failed: ${photo.error}`;
  row.querySelector(".file-state").textContent = label;
}

const pendingRows = new Set();
let frame = null;

function scheduleProgress(photo) {
  pendingRows.add(photo);
  if (frame !== null) return;
  frame = requestAnimationFrame(() => {
    frame = null;
    const batches = new Set();
    for (const p of pendingRows) {
      updateRow(p);
      batches.add(p.batchId);
    }
    pendingRows.clear();
    for (const id of batches) {
      const batch = state.batches.get(id);
      if (batch) renderBatchStatus(batch);
    }
  });
}

function batchTitle(batch) {
  const n = batch.photoKeys.length;
  const span = batch.firstMs === batch.lastMs ? when(batch.firstMs) : `${when(batch.firstMs)} – ${when(batch.lastMs)}`;
  return `${n} photo${n === 1 ? "" : "s"}, ${span}`;
}

function renderBatch(batch) {
  let view = state.views.get(batch.id);
  if (!view) {
    const root = element("section", { class: "batch", "data-batch": batch.id, "aria-label": `Upload of ${batchTitle(batch)}` });
    root.append(
      element("h3", { text: batchTitle(batch) }),
      element("p", { class: "batch-status", role: "status" }),
      element("progress", { class: "batch-progress", max: "1", value: "0", "aria-label": `Upload of ${batchTitle(batch)}` }),
      element("div", { class: "batch-result" }),
      element("details", { class: "batch-files" }, element("summary", { text: "Photos" }), element("ul", { class: "files" })),
      element("div", { class: "batch-actions" }),
    );
    view = { root, rows: new Map() };
    state.views.set(batch.id, view);
    $("batches").prepend(root);
    $("batches-section").hidden = false;
    // Each photo's progress shows while it uploads; a finished upload folds its list away.
    root.querySelector("details").open = batch.state === "uploading";
  }
  const list = view.root.querySelector("ul.files");
  const photos = batchPhotos(batch);
  if (photos.length && view.rows.size === 0) {
    for (const photo of photos) {
      const row = element("li", { "data-key": photo.key },
        element("span", { class: "name", text: photo.name }),
        element("progress", { max: String(photo.size), value: "0", "aria-label": `${photo.name} upload` }),
        element("span", { class: "file-state" }));
      view.rows.set(photo.key, row);
      list.append(row);
      updateRow(photo);
    }
  } else if (!photos.length && view.rows.size === 0 && list.children.length === 0) {
    for (const name of batch.names || []) list.append(element("li", {}, element("span", { class: "name", text: name })));
  }
  view.root.dataset.state = batch.state;
  if (batch.state === "done" && !view.folded) {
    view.root.querySelector("details").open = false;
    view.folded = true;
  }
  renderBatchStatus(batch);
  renderResult(batch, view);
  renderActions(batch, view);
}

function renderBatchStatus(batch) {
  const view = state.views.get(batch.id);
  if (!view) return;
  const status = view.root.querySelector(".batch-status");
  const bar = view.root.querySelector(".batch-progress");
  const photos = batchPhotos(batch);
  view.root.dataset.state = batch.state;
  if (batch.state === "uploading") {
    const total = photos.reduce((s, p) => s + p.size, 0) || 1;
    const sent = photos.reduce((s, p) => s + (p.state === "done" ? p.size : Math.min(p.sent || 0, p.size)), 0);
    const done = photos.filter((p) => p.state === "done").length;
    bar.max = total;
    bar.value = sent;
    bar.hidden = false;
    status.textContent = `Uploading: ${done} of ${photos.length} photos sent (${megabytes(sent)} of ${megabytes(total)}).`;
  } else if (batch.state === "finishing") {
    bar.removeAttribute("value"); // indeterminate
    status.textContent = "All photos sent; finishing the upload…";
  } else if (batch.state === "processing") {
    bar.removeAttribute("value");
    status.textContent = batch.serverState === "processing"
      ? "Processing on the server (privacy blurring, thumbnails, positions)…"
      : "Uploaded. Waiting for the server to process it…";
  } else if (batch.state === "done") {
    bar.hidden = true;
    const r = batch.result || {};
    const seqs = r.sequences || [];
    const onMap = seqs.length && seqs.every((s) => state.onMap.has(s.id));
    status.textContent = seqs.length
      ? `Done: ${r.imported} photo${r.imported === 1 ? "" : "s"} in ${seqs.length} sequence${seqs.length === 1 ? "" : "s"}${onMap ? ", shown on the map" : ""}.`
      : "Done, but the server kept no new photo (see below).";
    view.root.dataset.onMap = onMap ? "true" : "false";
  } else if (batch.state === "failed") {
    bar.hidden = true;
    status.textContent = `Failed: ${batch.error || "unknown error"}`;
  }
}

function renderResult(batch, view) {
  const box = view.root.querySelector(".batch-result");
  if (batch.state !== "done" || !batch.result) {
    box.replaceChildren();
    return;
  }
  const r = batch.result;
  const items = [];
  (r.sequences || []).forEach((seq) => {
    const link = seq.first_image_id
      ? element("a", { href: `/app?pKey=${encodeURIComponent(seq.first_image_id)}`, class: "open-app", text: "Open in the explorer" })
      : null;
    items.push(element("li", { "data-sequence": seq.id },
      `Sequence `, element("code", { text: seq.id }), `: ${seq.images} photo${seq.images === 1 ? "" : "s"}. `, link,
      " · ", element("a", { href: `/account/sequences/${encodeURIComponent(seq.id)}`, text: "Edit" })));
  });
  const parts = [element("ul", { class: "sequences" }, ...items)];
  const dropped = [...(batch.failedNames || []).map((f) => ({ item: f.name, reason: `not sent: ${f.reason}` })),
    ...(r.dropped || [])];
  if (dropped.length) {
    parts.push(element("p", { text: `The server did not keep ${r.dropped_count + (batch.failedNames || []).length} photo(s):` }),
      element("ul", { class: "dropped" }, ...dropped.map((d) => element("li", {},
        element("span", { class: "name", text: d.item }), ": ", element("span", { class: "reason", text: d.reason })))));
  }
  box.replaceChildren(...parts);
}

function renderActions(batch, view) {
  const actions = view.root.querySelector(".batch-actions");
  const buttons = [];
  const failed = batchPhotos(batch).filter((p) => p.state === "failed");
  if (batch.state === "uploading" || (batch.state === "failed" && failed.length && !batch.clusterId)) {
    if (failed.length) {
      buttons.push(element("button", { type: "button", class: "retry", text: `Retry ${failed.length} failed photo${failed.length === 1 ? "" : "s"}` }));
    }
  }
  if (batch.state !== "finishing" && batch.state !== "processing") {
    buttons.push(element("button", { type: "button", class: "secondary remove",
      text: batch.state === "uploading" ? "Cancel this upload" : "Remove from this list" }));
  }
  actions.replaceChildren(...buttons);
  const retry = actions.querySelector(".retry");
  if (retry) {
    retry.addEventListener("click", () => {
      for (const p of failed) {
        p.state = "waiting";
        p.error = null;
        savePhoto(p);
        updateRow(p);
      }
      batch.state = "uploading";
      batch.error = null;
      save(batch);
      renderBatch(batch);
      pump();
    });
  }
  const remove = actions.querySelector(".remove");
  if (remove) {
    remove.addEventListener("click", async () => {
      batch.state = "removed";
      try { await storeOf(batch).deleteBatch(batch); } catch { /* gone with the tab */ }
      state.batches.delete(batch.id);
      for (const k of batch.photoKeys) state.photos.delete(k);
      view.root.remove();
      state.views.delete(batch.id);
      $("batches-section").hidden = state.views.size === 0;
      renderOverall();
      $("file-input").focus();
    });
  }
}

// -- the map of finished uploads ------------------------------------------------------------

function uploadedLines() {
  const features = [];
  for (const batch of state.batches.values()) {
    if (batch.state !== "done" || !batch.result) continue;
    for (const seq of batch.result.sequences || []) {
      if (seq.line && seq.line.length) {
        features.push({ type: "Feature", properties: { id: seq.id },
                        geometry: seq.line.length > 1 ? { type: "LineString", coordinates: seq.line }
                          : { type: "Point", coordinates: seq.line[0] } });
      }
    }
  }
  return { type: "FeatureCollection", features };
}

function extent(collection) {
  const points = collection.features.flatMap((f) => (f.geometry.type === "Point" ? [f.geometry.coordinates] : f.geometry.coordinates));
  if (!points.length) return null;
  const lons = points.map((p) => p[0]);
  const lats = points.map((p) => p[1]);
  return [[Math.min(...lons), Math.min(...lats)], [Math.max(...lons), Math.max(...lats)]];
}

function showOnMap() {
  const lines = uploadedLines();
  const bounds = extent(lines);
  if (!bounds) return;
  $("map-section").hidden = false;
  if (state.map) {
    if (state.mapReady) state.map.getSource("uploaded").setData(lines);
    state.map.fitBounds(bounds, { padding: 40, maxZoom: 17, duration: 0 });
    return;
  }
  const sources = {};
  const layers = [];
  if (config.token) {
    // A fresh address per page: a tile the browser cached before this upload would not show it.
    const source = tileSource(config, "mly1_public");
    source.tiles = source.tiles.map((url) => `${url}&fresh=${Date.now().toString(36)}`);
    sources.wayview = source;
    layers.push(...coverageLayers("wayview"));
  }
  const center = [(bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2];
  const map = createMap(config, $("result-map"), { center, zoom: 16, sources, layers });
  state.map = map;
  map.on("load", () => {
    map.addSource("uploaded", { type: "geojson", data: uploadedLines() });
    map.addLayer({ id: "uploaded-line", type: "line", source: "uploaded",
                   layout: { "line-cap": "round", "line-join": "round" },
                   paint: { "line-color": HIGHLIGHT, "line-width": 3, "line-opacity": 0.6, "line-dasharray": [2, 2] } });
    state.mapReady = true;
    map.fitBounds(extent(uploadedLines()) || bounds, { padding: 40, maxZoom: 17, duration: 0 });
  });
  map.on("idle", markOnMap);
}

/** Which finished sequences this server's tiles draw now (the upload is really on the map). */
function markOnMap() {
  const map = state.map;
  if (!map || !map.getLayer("sequences")) return;
  const drawn = new Set(map.queryRenderedFeatures({ layers: ["sequences"] }).map((f) => String(f.properties.id)));
  for (const batch of state.batches.values()) {
    if (batch.state !== "done" || !batch.result) continue;
    let changed = false;
    for (const seq of batch.result.sequences || []) {
      if (drawn.has(seq.id) && !state.onMap.has(seq.id)) {
        state.onMap.add(seq.id);
        changed = true;
      }
    }
    if (changed) renderBatchStatus(batch);
  }
}

// -- start ----------------------------------------------------------------------------------

async function filesOfDrop(dataTransfer) {
  const items = [...(dataTransfer.items || [])];
  const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((e) => !e)) return [...dataTransfer.files];
  const out = [];
  const walk = async (entry, depth) => {
    if (entry.isFile) {
      out.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory && depth < 8) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, depth + 1);
      }
    }
  };
  for (const entry of entries) await walk(entry, 0);
  return out;
}

function wireDropping() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    addFiles(files);
  });
  let depth = 0;
  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    zone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // the whole page takes the drop (the browser would open the file)
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", async (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    addFiles(await filesOfDrop(event.dataTransfer));
  });
  $("clear-rejected").addEventListener("click", () => {
    state.rejected = [];
    renderRejected();
    $("file-input").focus();
  });
}

async function start() {
  wireDropping();
  restoreRejected();
  renderRejected();
  state.store = await openStore();
  for (const batch of await state.store.batchesOf(USER)) {
    state.batches.set(batch.id, batch);
    if (batch.state === "uploading" || batch.state === "finishing") {
      for (const key of batch.photoKeys) {
        const photo = await state.store.photo(key);
        const progress = (batch.photoState || {})[key] || { state: "waiting", handle: null, error: null };
        if (photo) state.photos.set(key, { ...photo, ...progress });
      }
    }
  }
  for (const batch of sortedBatches()) renderBatch(batch);
  if (sortedBatches().some((b) => b.state === "done")) showOnMap();
  document.body.dataset.ready = "true";
  pump();
  window.addEventListener("beforeunload", (event) => {
    const volatile = sortedBatches().some((b) => (b.volatile || !state.store.persistent) && b.state === "uploading");
    if (volatile) event.preventDefault();
  });
}

start();
