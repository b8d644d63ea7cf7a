// Time travel (issue #18 item 4): the captures of the place the viewer stands on, by date.
//
// One Graph search backs it (docs/api.md, "Time travel"): the images within RADIUS_M of the
// viewer's position, `GET /images?bbox=…&fields=id,captured_at,sequence,geometry,
// compass_angle,is_pano`, following `paging.next`. Each sequence that passed there is one
// capture, represented by its image nearest to the position (facing the same way when it can).
// The timeline under the viewer lists the years and the captures of each; picking one moves the
// viewer there, in place.

export const RADIUS_M = 25;
/** Pages of 2,000 images followed at most (a place with more keeps the earliest). */
const MAX_PAGES = 5;
/** Moving less than this keeps the captures found (the viewer steps every few metres). */
const REFRESH_M = 10;
const M_PER_DEG = 111320;

export function distanceM(a, b) {
  const x = (b.lng - a.lng) * Math.cos(((a.lat + b.lat) / 2) * (Math.PI / 180));
  return Math.hypot(x, b.lat - a.lat) * M_PER_DEG;
}

function angleBetween(a, b) {
  const d = Math.abs((((a - b) % 360) + 540) % 360 - 180);
  return Number.isFinite(d) ? d : 0;
}

/** The bbox of `radiusM` metres around a position, as the Graph API takes it. */
export function bboxAround({ lng, lat }, radiusM = RADIUS_M) {
  const dLat = radiusM / M_PER_DEG;
  const dLng = radiusM / (M_PER_DEG * Math.max(0.01, Math.cos((lat * Math.PI) / 180)));
  return [lng - dLng, lat - dLat, lng + dLng, lat + dLat].map((v) => v.toFixed(7)).join(",");
}

/** Follow a Graph search through `paging.next`: every row, at most `maxPages` pages. */
export async function searchAll(url, maxPages = MAX_PAGES, signal = undefined) {
  const rows = [];
  let next = url;
  for (let page = 0; next && page < maxPages; page += 1) {
    const response = await fetch(next, { signal });
    if (!response.ok) throw new Error(`search answered ${response.status}`);
    const body = await response.json();
    rows.push(...(body.data || []));
    next = body.paging && body.paging.next;
  }
  return rows;
}

/** One capture per sequence: its image nearest to `here` (a 30 m penalty when it faces away
 *  from `bearing` by more than 90°, panoramas face everywhere), in capture order. */
export function capturesAt(rows, here, bearing) {
  const best = new Map();
  for (const row of rows) {
    const [lng, lat] = row.geometry.coordinates;
    let score = distanceM(here, { lng, lat });
    if (!row.is_pano && Number.isFinite(bearing) && Number.isFinite(row.compass_angle)
        && angleBetween(row.compass_angle, bearing) > 90) score += 30;
    const key = String(row.sequence);
    const seen = best.get(key);
    if (!seen || score < seen.score) {
      best.set(key, { id: String(row.id), capturedAt: Number(row.captured_at), sequence: key,
                      score });
    }
  }
  return [...best.values()].sort((a, b) => a.capturedAt - b.capturedAt || a.id.localeCompare(b.id));
}

const DATE = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric",
                                                timeZone: "UTC" });

/** The timeline: `update(lngLat, bearing, image)` on every viewer move, `onPick(id)` when a
 *  capture is chosen. `state` (for tests and the keyboard) holds the captures shown. */
export function createTimeline({ config, container, onPick, onResize = () => {} }) {
  const state = { captures: [], currentSequence: null, queries: 0, error: null };
  let last = null;
  let generation = 0;
  let timer = null;

  let height = 0;
  function render() {
    draw();
    if (container.offsetHeight !== height) {
      height = container.offsetHeight;
      onResize();
    }
  }

  function draw() {
    container.replaceChildren();
    const { captures } = state;
    container.hidden = captures.length === 0;
    if (!captures.length) return;
    const heading = document.createElement("p");
    heading.className = "timeline-heading";
    heading.textContent = captures.length === 1
      ? "Captured here once"
      : `Captured here ${captures.length} times`;
    container.append(heading);
    const years = new Map();
    for (const capture of captures) {
      const year = new Date(capture.capturedAt).getUTCFullYear();
      if (!years.has(year)) years.set(year, []);
      years.get(year).push(capture);
    }
    const list = document.createElement("ol");
    list.className = "timeline-years";
    for (const [year, inYear] of years) {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "timeline-year";
      label.textContent = String(year);
      item.append(label);
      for (const capture of inYear) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "timeline-capture";
        button.dataset.imageId = capture.id;
        button.textContent = DATE.format(new Date(capture.capturedAt));
        if (capture.sequence === state.currentSequence) {
          button.setAttribute("aria-current", "true");
        }
        button.addEventListener("click", () => pick(capture));
        item.append(button);
      }
      list.append(item);
    }
    container.append(list);
  }

  function pick(capture) {
    state.currentSequence = capture.sequence;
    render();
    onPick(capture.id);
  }

  async function query(here, bearing, image) {
    const mine = ++generation;
    const url = `${config.base}/images?bbox=${bboxAround(here)}`
      + "&fields=id,captured_at,sequence,geometry,compass_angle,is_pano&limit=2000"
      + `&access_token=${encodeURIComponent(config.token)}`;
    try {
      state.queries += 1;
      const rows = await searchAll(url);
      if (mine !== generation) return;
      state.captures = capturesAt(rows, here, bearing);
      state.error = null;
      represent(image);
      last = here;
    } catch (error) {
      if (mine !== generation) return;
      state.captures = [];
      state.error = String(error);
    }
    render();
  }

  /** The image shown stands for its own sequence, whatever image is nearest. */
  function represent(image) {
    const own = state.captures.find((c) => c.sequence === image.sequenceId);
    if (own) own.id = image.id;
    return own;
  }

  return {
    state,
    /** The viewer moved to `image` ({id, sequenceId}) at `here` facing `bearing`: keep the
     *  captures when still near the last query, else ask again (debounced). */
    update(here, bearing, image) {
      state.currentSequence = image.sequenceId;
      const own = represent(image);
      if (own) render();
      if (last && own && distanceM(last, here) < REFRESH_M) return;
      clearTimeout(timer);
      timer = setTimeout(() => query(here, bearing, image), 250);
    },
    /** Move `step` captures later (+1) or earlier (−1) in time. */
    step(step) {
      const { captures } = state;
      const at = captures.findIndex((c) => c.sequence === state.currentSequence);
      const target = captures[at + step];
      if (at >= 0 && target) pick(target);
    },
  };
}
