// Tiny DOM helpers. Nodes are built with createElement and text nodes only: no innerHTML,
// so the widget also runs where the host enforces Trusted Types.

let guard = (fn) => fn;

/** Wrap every listener `h` attaches (the runtime's guard reports errors instead of throwing). */
export function guardListeners(wrap) {
  guard = wrap;
}

/** h("button", {type: "button", onclick: fn}, "text", child) */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), guard(v));
    else if (v != null) el.setAttribute(k, v);
  }
  el.append(...kids.flat().filter((k) => k != null));
  return el;
}

/** A list attribute: a JSON array, or comma-separated text. */
export function list(value) {
  if (Array.isArray(value)) return value;
  if (!value) return [];
  try {
    const parsed = JSON.parse(value);
    if (Array.isArray(parsed)) return parsed;
  } catch {}
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

/** A random UUID v4 (crypto.randomUUID needs a secure context; getRandomValues does not). */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const x = Array.from(b, (n) => (n + 256).toString(16).slice(1)).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}
