// Small DOM helpers shared by the client's screens.

export const $ = (selector) => document.querySelector(selector);

/// Creates an element: `on*` props become listeners, the rest attributes;
/// string children become text (never HTML).
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function formatTime(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function newClientMsgId() {
  // getRandomValues works outside secure contexts too (plain http on a LAN).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "web-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function showError(el, e) {
  el.textContent = e?.message || String(e);
  el.hidden = false;
}
