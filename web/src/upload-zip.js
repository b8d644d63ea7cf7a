// The /upload page's zip reader: the members of a zip as Blobs, read in the browser so every
// photo inside is checked (and listed with its reason when bad) before anything is sent.
// Stored members are slices of the file; deflated ones are inflated with the browser's
// DecompressionStream("deflate-raw"). Zip64 sizes and offsets are understood; encrypted
// members and other compression methods are refused with a reason.

const EOCD = 0x06054b50;
const EOCD64_LOCATOR = 0x07064b50;
const EOCD64 = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

async function bytesOf(blob, start, end) {
  return new DataView(await blob.slice(start, end).arrayBuffer());
}

function decodeName(bytes) {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return String.fromCharCode(...bytes); // an old DOS code page: close enough for a label
  }
}

/** Sizes and offset from a zip64 extra field where the 32-bit ones are saturated. */
function zip64(extra, entry) {
  let at = 0;
  while (at + 4 <= extra.byteLength) {
    const id = extra.getUint16(at, true);
    const size = extra.getUint16(at + 2, true);
    if (id === 0x0001) {
      let p = at + 4;
      const next = () => { const v = Number(extra.getBigUint64(p, true)); p += 8; return v; };
      if (entry.size === 0xffffffff && p + 8 <= at + 4 + size) entry.size = next();
      if (entry.compressedSize === 0xffffffff && p + 8 <= at + 4 + size) entry.compressedSize = next();
      if (entry.offset === 0xffffffff && p + 8 <= at + 4 + size) entry.offset = next();
      return;
    }
    at += 4 + size;
  }
}

/**
 * The entries of a zip file, in central-directory order.
 * @returns {Promise<Array<{name, size, compressedSize, method, encrypted, offset}>>}
 * @throws Error with a reason when the file is not a readable zip.
 */
export async function zipEntries(file, maxEntries) {
  const tailStart = Math.max(0, file.size - (22 + 65535));
  const tail = await bytesOf(file, tailStart, file.size);
  let at = -1;
  for (let p = tail.byteLength - 22; p >= 0; p -= 1) {
    if (tail.getUint32(p, true) === EOCD) { at = p; break; }
  }
  if (at < 0) throw new Error("not a zip file (or a damaged one)");
  let count = tail.getUint16(at + 10, true);
  let dirSize = tail.getUint32(at + 12, true);
  let dirOffset = tail.getUint32(at + 16, true);
  if (count === 0xffff || dirOffset === 0xffffffff) {
    const locator = at - 20;
    if (locator < 0 || tail.getUint32(locator, true) !== EOCD64_LOCATOR) throw new Error("damaged zip64 file");
    const recordAt = Number(tail.getBigUint64(locator + 8, true));
    const record = await bytesOf(file, recordAt, recordAt + 56);
    if (record.byteLength < 56 || record.getUint32(0, true) !== EOCD64) throw new Error("damaged zip64 file");
    count = Number(record.getBigUint64(32, true));
    dirSize = Number(record.getBigUint64(40, true));
    dirOffset = Number(record.getBigUint64(48, true));
  }
  if (count > maxEntries) throw new Error(`the zip holds ${count} files; at most ${maxEntries} photos per upload`);
  if (dirOffset + dirSize > file.size) throw new Error("damaged zip file: its directory is missing");
  const dir = await bytesOf(file, dirOffset, dirOffset + dirSize);
  const entries = [];
  let p = 0;
  for (let k = 0; k < count; k += 1) {
    if (p + 46 > dir.byteLength || dir.getUint32(p, true) !== CENTRAL) throw new Error("damaged zip file: broken directory");
    const flags = dir.getUint16(p + 8, true);
    const nameLength = dir.getUint16(p + 28, true);
    const extraLength = dir.getUint16(p + 30, true);
    const commentLength = dir.getUint16(p + 32, true);
    const nameBytes = new Uint8Array(dir.buffer, dir.byteOffset + p + 46, Math.min(nameLength, dir.byteLength - p - 46));
    const entry = {
      name: decodeName(nameBytes),
      method: dir.getUint16(p + 10, true),
      encrypted: (flags & 0x1) !== 0,
      compressedSize: dir.getUint32(p + 20, true),
      size: dir.getUint32(p + 24, true),
      offset: dir.getUint32(p + 42, true),
    };
    const extraStart = p + 46 + nameLength;
    if (extraStart + extraLength <= dir.byteLength) {
      zip64(new DataView(dir.buffer, dir.byteOffset + extraStart, extraLength), entry);
    }
    entries.push(entry);
    p = extraStart + extraLength + commentLength;
  }
  return entries;
}

/** One member's bytes as a Blob (inflated when deflated). Throws Error with a reason. */
export async function zipMember(file, entry) {
  if (entry.encrypted) throw new Error("encrypted");
  if (entry.method !== 0 && entry.method !== 8) throw new Error(`compressed with an unsupported method (${entry.method})`);
  const local = await bytesOf(file, entry.offset, entry.offset + 30);
  if (local.byteLength < 30 || local.getUint32(0, true) !== LOCAL) throw new Error("damaged zip member");
  const start = entry.offset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
  const end = start + entry.compressedSize;
  if (end > file.size) throw new Error("damaged zip member: truncated");
  const raw = file.slice(start, end, "image/jpeg");
  if (entry.method === 0) return raw;
  try {
    let seen = 0;
    const bounded = new TransformStream({ // a member that inflates past its declared size stops
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > entry.size) controller.error(new Error("inflates past its declared size"));
        else controller.enqueue(chunk);
      },
    });
    const inflated = raw.stream().pipeThrough(new DecompressionStream("deflate-raw")).pipeThrough(bounded);
    const blob = await new Response(inflated).blob();
    if (blob.size !== entry.size) throw new Error("size mismatch");
    return blob.slice(0, blob.size, "image/jpeg");
  } catch (error) {
    throw new Error(`damaged zip member (${error.message || "does not inflate"})`);
  }
}

/** Zip members the page skips without a word: folders and macOS resource forks. */
export function isNoise(name) {
  return name.endsWith("/") || name.startsWith("__MACOSX/") || /(^|\/)\._/.test(name)
    || /(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini)$/i.test(name);
}
