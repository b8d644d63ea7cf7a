// Keyboard shortcuts of /app (issue #18 items 2 and 7). Keys act only when no text field has the
// focus; "?" opens the list (a <dialog>), Escape closes it.

function typing(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));
}

/** `keys`: {key: [description, action]}; the dialog lists them. */
export function installShortcuts({ dialog, opener, keys }) {
  const list = dialog.querySelector("dl");
  const all = { "?": ["This list", () => dialog.showModal()], ...keys };
  for (const [key, [description]] of Object.entries(all)) {
    const term = document.createElement("dt");
    const kbd = document.createElement("kbd");
    kbd.textContent = key === "Escape" ? "Esc" : key;
    term.append(kbd);
    const definition = document.createElement("dd");
    definition.textContent = description;
    list.append(term, definition);
  }
  opener.addEventListener("click", () => dialog.showModal());
  dialog.querySelector("button").addEventListener("click", () => dialog.close());
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (dialog.open) return; // the dialog closes on Escape by itself
    if (event.key !== "Escape" && typing(event.target)) return;
    const entry = all[event.key];
    if (!entry) return;
    event.preventDefault();
    entry[1]();
  });
}
