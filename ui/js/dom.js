// Small helpers for building the page. All user-controlled text (labels, file names, news,
// server messages) goes in with textContent, never parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** Creates an element with a class and text (text via textContent only). */
export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function button(text, cls, onClick, label) {
  const b = el("button", cls, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

export function emptyState(icon, title, text) {
  const box = el("div", "empty");
  box.append(el("span", "big", icon), el("strong", null, title), el("span", null, text));
  return box;
}

/** Sets a feedback line: `cls` is "", "ok", "error" or "busy". */
export function feedback(id, text, cls) {
  const f = $(id);
  f.textContent = text;
  f.className = `feedback ${cls || ""}`;
}

export function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 45) return "just now";
  if (s < 90) return "a minute ago";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

export function when(ms) {
  const t = el("time", null, ago(ms));
  t.dateTime = new Date(ms).toISOString();
  t.title = new Date(ms).toLocaleString();
  return t;
}

/** Asks before doing something that cannot be undone; runs `action` on OK. */
export function confirmAction(title, text, okLabel, okClass, action) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  $("confirm-ok").className = okClass;
  dialog.showModal();
  $("confirm-cancel").focus();
  dialog.onclose = async () => {
    $("confirm-ok").className = "danger";
    if (dialog.returnValue === "ok") await action();
  };
}
