// The /upload page's photo check: position, capture time and camera of a JPEG, read from the
// first segments of the file with the server's rules (wayview.ingest.exif), so a photo the
// server would drop is listed with its reason and never sent:
//   position: mapillary_tools' ImageDescription JSON (MAPLatitude/MAPLongitude), else EXIF GPS,
//             else XMP exif:GPSLatitude/GPSLongitude; (0, 0) counts as none;
//   time:     MAPCaptureTime (UTC), else GPS date + time stamps (UTC), else DateTimeOriginal or
//             DateTimeDigitized (+ sub-seconds and offset; no offset means UTC), else XMP.

const JPEG_MAGIC = [0xff, 0xd8, 0xff];
const EXIF_ID = "Exif\0\0";
const XMP_ID = "http://ns.adobe.com/xap/1.0/\0";
/** Most header bytes read before giving up on finding the frame (EXIF + XMP + ICC fit). */
const MAX_HEADER_BYTES = 2 * 1024 * 1024;

const TAG = {
  imageDescription: 0x010e, make: 0x010f, model: 0x0110, exifIfd: 0x8769, gpsIfd: 0x8825,
  dateTimeOriginal: 0x9003, dateTimeDigitized: 0x9004, offsetOriginal: 0x9011,
  offsetDigitized: 0x9012, subSecOriginal: 0x9291, subSecDigitized: 0x9292,
  gpsLatRef: 1, gpsLat: 2, gpsLonRef: 3, gpsLon: 4, gpsTimeStamp: 7, gpsDateStamp: 0x1d,
};
const TYPE_SIZES = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8 };

/** What a file is, from its first bytes, for the reason of a refusal. */
export function sniffKind(bytes) {
  const starts = (...sig) => sig.every((b, i) => bytes[i] === b);
  const ascii = (at, text) => [...text].every((c, i) => bytes[at + i] === c.charCodeAt(0));
  if (starts(...JPEG_MAGIC)) return "jpeg";
  if (starts(0x50, 0x4b, 0x03, 0x04) || starts(0x50, 0x4b, 0x05, 0x06)) return "zip";
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "a PNG image";
  if (ascii(0, "GIF8")) return "a GIF image";
  if (ascii(0, "RIFF") && ascii(8, "WEBP")) return "a WebP image";
  if (ascii(4, "ftyp")) {
    const brand = String.fromCharCode(...bytes.slice(8, 12));
    if (/^(heic|heix|hevc|mif1|msf1|heim|heis)$/.test(brand)) return "a HEIC photo (export it as JPEG first)";
    if (/^avi/.test(brand)) return "an AVIF image";
    return "a video";
  }
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return "a TIFF or raw photo";
  if (ascii(0, "%PDF")) return "a PDF document";
  return null;
}

async function readBytes(blob, start, end) {
  return new Uint8Array(await blob.slice(start, end).arrayBuffer());
}

/** The EXIF (TIFF) block and the XMP packet of a JPEG, walking its segments up to the frame.
 *  Throws Error("corrupt JPEG …") when the segments are broken. */
async function headerSegments(blob) {
  let exif = null;
  let xmp = null;
  let pos = 2;
  let buffer = await readBytes(blob, 0, Math.min(blob.size, 256 * 1024));
  let bufferStart = 0;
  const need = async (from, length) => {
    if (from + length <= bufferStart + buffer.length) return buffer.subarray(from - bufferStart, from - bufferStart + length);
    if (from + length > blob.size) throw new Error("corrupt JPEG: the file ends inside its header");
    bufferStart = from;
    buffer = await readBytes(blob, from, Math.min(blob.size, from + Math.max(length, 256 * 1024)));
    return buffer.subarray(0, length);
  };
  while (pos < MAX_HEADER_BYTES) {
    const head = await need(pos, 4);
    if (head[0] !== 0xff) throw new Error("corrupt JPEG: broken segment structure");
    const marker = head[1];
    if (marker === 0xff) { pos += 1; continue; } // fill byte
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { pos += 2; continue; }
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end: no more metadata
    const length = (head[2] << 8) | head[3];
    if (length < 2) throw new Error("corrupt JPEG: broken segment length");
    if (marker === 0xe1) {
      const body = await need(pos + 4, length - 2);
      const id = String.fromCharCode(...body.subarray(0, Math.min(29, body.length)));
      if (exif === null && id.startsWith(EXIF_ID)) exif = body.slice(EXIF_ID.length);
      else if (xmp === null && id.startsWith(XMP_ID)) xmp = new TextDecoder().decode(body.subarray(XMP_ID.length));
    }
    pos += 2 + length;
  }
  return { exif, xmp };
}

/** A small bounds-checked TIFF reader: the tags of IFD0, the Exif IFD and the GPS IFD. */
function readTiff(tiff) {
  if (tiff.length < 8) throw new Error("corrupt EXIF");
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const order = String.fromCharCode(tiff[0], tiff[1]);
  if (order !== "II" && order !== "MM") throw new Error("corrupt EXIF");
  const little = order === "II";
  const u16 = (at) => view.getUint16(at, little);
  const u32 = (at) => view.getUint32(at, little);
  const i32 = (at) => view.getInt32(at, little);
  const value = (type, count, at) => {
    const size = TYPE_SIZES[type] || 1;
    const total = size * count;
    const start = total <= 4 ? at : u32(at);
    if (start + total > tiff.length || count > 65536) return undefined;
    if (type === 2 || type === 7 || type === 1) {
      const raw = tiff.subarray(start, start + total);
      if (type === 2 || type === 7) return new TextDecoder().decode(raw).replace(/\0+$/, "");
      return Array.from(raw);
    }
    const out = [];
    for (let k = 0; k < count; k += 1) {
      const p = start + k * size;
      if (type === 3) out.push(u16(p));
      else if (type === 4) out.push(u32(p));
      else if (type === 9) out.push(i32(p));
      else if (type === 5) out.push(u32(p + 4) ? u32(p) / u32(p + 4) : NaN);
      else if (type === 10) out.push(i32(p + 4) ? i32(p) / i32(p + 4) : NaN);
    }
    return out;
  };
  const ifd = (offset) => {
    const tags = new Map();
    if (!offset || offset + 2 > tiff.length) return tags;
    const count = u16(offset);
    for (let k = 0; k < count; k += 1) {
      const at = offset + 2 + k * 12;
      if (at + 12 > tiff.length) break;
      const found = value(u16(at + 2), u32(at + 4), at + 8);
      if (found !== undefined) tags.set(u16(at), found);
    }
    return tags;
  };
  const ifd0 = ifd(u32(4));
  const pointer = (tag) => { const v = ifd0.get(tag); return Array.isArray(v) ? v[0] : 0; };
  return { ifd0, exif: ifd(pointer(TAG.exifIfd)), gps: ifd(pointer(TAG.gpsIfd)) };
}

function validPosition(lat, lon) {
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return null;
  if (lat < -90 || lat > 90 || lon < -180 || lon > 180 || (lat === 0 && lon === 0)) return null;
  return { lat, lon };
}

function utcMs(y, mo, d, h, mi, s, fraction = 0, offsetMin = 0) {
  if (![y, mo, d, h, mi, s].every(Number.isFinite) || mo < 1 || mo > 12 || d < 1 || d > 31
      || h > 24 || mi > 59 || s > 60) return null;
  return Date.UTC(y, mo - 1, d, h, mi, s) + Math.round(fraction * 1000) - offsetMin * 60000;
}

function mapDescription(text) {
  if (typeof text !== "string" || !text.trim().startsWith("{")) return {};
  try {
    const parsed = JSON.parse(text.replace(/\0/g, "").trim());
    if (parsed && typeof parsed === "object" && Object.keys(parsed).some((k) => k.startsWith("MAP"))) return parsed;
  } catch { /* not JSON: no description */ }
  return {};
}

function mapTime(value) {
  const m = typeof value === "string" && value.trim().match(/^(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})(?:_(\d{1,6}))?$/);
  if (!m) return null;
  const frac = m[7] ? Number(m[7]) / 10 ** m[7].length : 0;
  return utcMs(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], frac);
}

function dms(values, ref) {
  if (!Array.isArray(values) || values.length < 3 || !values.every(Number.isFinite)) return NaN;
  const deg = values[0] + values[1] / 60 + values[2] / 3600;
  return /^[SW]/i.test(String(ref || "").trim()) ? -deg : deg;
}

function offsetMinutes(text) {
  const m = typeof text === "string" && text.trim().match(/^([+-])(\d{2}):?(\d{2})$/);
  if (!m) return 0;
  return (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

function exifDateTime(text, subsec, offset) {
  const m = typeof text === "string" && text.trim().match(/^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$/);
  if (!m) return null;
  const digits = typeof subsec === "string" ? subsec.trim().replace(/ /g, "0") : "";
  const frac = /^\d+$/.test(digits) ? Number(digits) / 10 ** digits.length : (m[7] ? Number(m[7]) / 10 ** m[7].length : 0);
  const off = offsetMinutes(offset) || (m[8] && m[8] !== "Z" ? offsetMinutes(m[8]) : 0);
  return utcMs(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], frac, off);
}

function xmpProperty(xmp, name) {
  if (!xmp) return null;
  const attr = xmp.match(new RegExp(`\\bexif:${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`));
  if (attr) return attr[1] ?? attr[2];
  const element = xmp.match(new RegExp(`<exif:${name}>([^<]*)</exif:${name}>`));
  return element ? element[1] : null;
}

function xmpCoordinate(text) {
  const m = typeof text === "string" && text.match(/^\s*(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?(?:,(\d+(?:\.\d+)?))?\s*([NSEWnsew])?\s*$/);
  if (!m) return NaN;
  const value = Number(m[1]) + (m[2] ? Number(m[2]) / 60 : 0) + (m[3] ? Number(m[3]) / 3600 : 0);
  return m[4] && /[SW]/i.test(m[4]) ? -value : value;
}

const text = (v) => (typeof v === "string" ? v.replace(/\0/g, "").trim() || null : null);

/**
 * Check one photo (a Blob) the way the server will.
 * @returns {Promise<{ok: true, lat, lon, capturedAtMs, make, model} | {ok: false, reason: string}>}
 */
export async function checkPhoto(blob, maxBytes) {
  if (blob.size === 0) return { ok: false, reason: "empty file" };
  const first = await readBytes(blob, 0, 16);
  const kind = sniffKind(first);
  if (kind !== "jpeg") return { ok: false, reason: kind ? `not a JPEG photo: ${kind}` : "not a JPEG photo" };
  if (blob.size > maxBytes) {
    return { ok: false, reason: `too large: ${megabytes(blob.size)} (this server takes photos up to ${megabytes(maxBytes)})` };
  }
  let segments;
  try {
    segments = await headerSegments(blob);
  } catch (error) {
    return { ok: false, reason: error.message };
  }
  let tags = { ifd0: new Map(), exif: new Map(), gps: new Map() };
  let exifBroken = false;
  if (segments.exif) {
    try { tags = readTiff(segments.exif); } catch { exifBroken = true; }
  }
  const { ifd0, exif, gps } = tags;
  const desc = mapDescription(ifd0.get(TAG.imageDescription));
  const position = validPosition(Number(desc.MAPLatitude ?? NaN), Number(desc.MAPLongitude ?? NaN))
    || validPosition(dms(gps.get(TAG.gpsLat), gps.get(TAG.gpsLatRef)), dms(gps.get(TAG.gpsLon), gps.get(TAG.gpsLonRef)))
    || validPosition(xmpCoordinate(xmpProperty(segments.xmp, "GPSLatitude")), xmpCoordinate(xmpProperty(segments.xmp, "GPSLongitude")));
  if (!position) {
    return { ok: false, reason: exifBroken ? "corrupt EXIF and no GPS position elsewhere" : "no GPS position in its EXIF" };
  }
  const stamp = gps.get(TAG.gpsTimeStamp);
  const date = text(gps.get(TAG.gpsDateStamp));
  const dm = date && date.match(/^(\d{4})[:-](\d{2})[:-](\d{2})$/);
  const gpsTime = dm && Array.isArray(stamp) && stamp.length >= 3
    ? utcMs(+dm[1], +dm[2], +dm[3], Math.floor(stamp[0]), Math.floor(stamp[1]), Math.floor(stamp[2]), stamp[2] % 1) : null;
  const capturedAtMs = mapTime(desc.MAPCaptureTime)
    ?? gpsTime
    ?? exifDateTime(text(exif.get(TAG.dateTimeOriginal)), text(exif.get(TAG.subSecOriginal)), text(exif.get(TAG.offsetOriginal)))
    ?? exifDateTime(text(exif.get(TAG.dateTimeDigitized)), text(exif.get(TAG.subSecDigitized)), text(exif.get(TAG.offsetDigitized)))
    ?? exifDateTime(xmpProperty(segments.xmp, "DateTimeOriginal"));
  if (capturedAtMs === null) return { ok: false, reason: "no capture time in its EXIF" };
  return {
    ok: true, lat: position.lat, lon: position.lon, capturedAtMs,
    make: text(desc.MAPDeviceMake) || text(ifd0.get(TAG.make)) || "",
    model: text(desc.MAPDeviceModel) || text(ifd0.get(TAG.model)) || "",
  };
}

export function megabytes(bytes) {
  if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} kB`;
  return `${(bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}
