// Place search of /app (issue #18 item 2): a Nominatim-compatible geocoder the operator names
// (`web.geocoder_url`; off by default, then the form stays hidden and nothing leaves the
// server). `GET <url>?q=<text>&format=jsonv2&limit=5`; the map fits the place picked.

/** The place search in `form`, or null when no geocoder is configured. */
export function createPlaceSearch({ config, map, form, input, results }) {
  let url;
  try {
    url = config.geocoderUrl ? new URL(config.geocoderUrl) : null;
  } catch {
    url = null;
  }
  if (!url || !/^https?:$/.test(url.protocol)) {
    form.hidden = true;
    return null;
  }
  form.hidden = false;
  const state = { searches: 0 };

  function show(message) {
    const item = document.createElement("li");
    item.className = "place-message";
    item.textContent = message;
    results.replaceChildren(item);
  }

  function go(place) {
    const box = (place.boundingbox || []).map(Number);
    if (box.length === 4 && box.every(Number.isFinite)) {
      const [south, north, west, east] = box;
      map.fitBounds([[west, south], [east, north]], { maxZoom: 17, duration: 0 });
    } else {
      map.jumpTo({ center: [Number(place.lon), Number(place.lat)], zoom: 16 });
    }
    results.replaceChildren();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const query = new URL(url);
    query.searchParams.set("q", text.slice(0, 200));
    query.searchParams.set("format", "jsonv2");
    query.searchParams.set("limit", "5");
    show("Searching…");
    state.searches += 1;
    let places;
    try {
      const response = await fetch(query, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(String(response.status));
      places = await response.json();
    } catch {
      show("The place search is not available right now.");
      return;
    }
    places = Array.isArray(places) ? places.filter(
      (p) => Number.isFinite(Number(p.lat)) && Number.isFinite(Number(p.lon))) : [];
    if (!places.length) {
      show(`No place called “${text}”.`);
      return;
    }
    results.replaceChildren(...places.map((place) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "place-result";
      button.textContent = String(place.display_name || place.name || `${place.lat}, ${place.lon}`);
      button.addEventListener("click", () => go(place));
      item.append(button);
      return item;
    }));
    if (places.length === 1) go(places[0]);
    else results.querySelector("button").focus();
  });
  return state;
}
