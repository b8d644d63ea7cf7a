// The map-feature value picker of /app (issue #18 item 3): search the taxonomy (the names of
// the Mapillary sprites, traffic signs and objects), pick values with their icons; the point
// and sign layers then show only those values (the tiles carry `value`: filtered client-side).

/** How many matches the list shows at once. */
const SHOWN = 24;

/** "regulatory--stop--g1" → "regulatory › stop (g1)". */
export function valueLabel(value) {
  const parts = value.split("--");
  const variant = /^g\d+$/.test(parts[parts.length - 1]) ? parts.pop() : null;
  const text = parts.map((p) => p.replace(/-/g, " ")).join(" › ");
  return variant ? `${text} (${variant})` : text;
}

function icon(config, value) {
  const img = document.createElement("img");
  img.src = `${config.spritesUrl}/${value}.svg`;
  img.alt = "";
  img.width = img.height = 20;
  img.loading = "lazy";
  return img;
}

/** The picker in `root` (an input, a list of matches, a list of chosen values); `onChange`
 *  gets the chosen values (an array, empty = all). */
export function createValuePicker({ config, input, options, chosen, onChange, initial = [] }) {
  let names = null;
  const picked = new Set(initial);

  async function taxonomy() {
    if (names === null) {
      try {
        names = await (await fetch(config.spriteNamesUrl)).json();
      } catch {
        names = [];
      }
    }
    return names;
  }

  function renderChosen() {
    chosen.replaceChildren();
    for (const value of picked) {
      const item = document.createElement("li");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "value-chip";
      remove.title = `Remove ${valueLabel(value)}`;
      remove.setAttribute("aria-label", `Remove ${valueLabel(value)}`);
      remove.append(icon(config, value), document.createTextNode(` ${valueLabel(value)} ×`));
      remove.addEventListener("click", () => {
        picked.delete(value);
        renderChosen();
        onChange([...picked]);
        input.focus();
      });
      item.append(remove);
      chosen.append(item);
    }
  }

  async function renderOptions() {
    const words = input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    options.replaceChildren();
    if (!words.length) return;
    const matches = (await taxonomy()).filter(
      (name) => !picked.has(name) && words.every((w) => name.replace(/-/g, " ").includes(w)));
    for (const value of matches.slice(0, SHOWN)) {
      const item = document.createElement("li");
      const add = document.createElement("button");
      add.type = "button";
      add.className = "value-option";
      add.dataset.value = value;
      add.append(icon(config, value), document.createTextNode(` ${valueLabel(value)}`));
      add.addEventListener("click", () => {
        picked.add(value);
        renderChosen();
        renderOptions();
        onChange([...picked]);
      });
      item.append(add);
      options.append(item);
    }
    if (matches.length > SHOWN) {
      const more = document.createElement("li");
      more.className = "value-more";
      more.textContent = `${matches.length - SHOWN} more: type more of the name`;
      options.append(more);
    } else if (!matches.length) {
      const none = document.createElement("li");
      none.className = "value-more";
      none.textContent = "No value matches.";
      options.append(none);
    }
  }

  input.addEventListener("input", renderOptions);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      const first = options.querySelector("button");
      if (first) first.click();
    }
  });
  renderChosen();
  return { values: () => [...picked] };
}
