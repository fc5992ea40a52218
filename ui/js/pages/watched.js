// The Watched page: the caps being watched, and the form that adds one, either pasted or
// picked from the user's Tahoe aliases (whose caps never come to the page: only names).
import { invoke } from "../api.js";
import { $, el, button, emptyState, when, confirmAction } from "../dom.js";

let app = null;
let validateTimer = null;
let lastValidation = null;

function capStatusText(c) {
  if (c.subscribed_on === null || c.subscribed_on === undefined) return { text: "waiting for the servers…", dot: "" };
  if (c.servers === 0) return { text: "polling the gateway (no updates servers)", dot: "warn" };
  const text = `subscribed on ${c.subscribed_on} of ${c.servers}`;
  if (c.subscribed_on === c.servers) return { text, dot: "ok" };
  if (c.subscribed_on === 0) return { text: `${text} · polling the gateway`, dot: "bad" };
  return { text, dot: "warn" };
}

export async function refresh() {
  const caps = await invoke("list_caps");
  const list = $("caps-list");
  list.replaceChildren();
  if (!caps.length) {
    list.append(emptyState("◎", "Nothing watched yet", "Add a folder or file cap to get a notification whenever it changes."));
  }
  for (const c of caps) list.append(capRow(c));
  if (!$("add-card").hidden) await refreshAliases();
}

function capRow(c) {
  const row = el("article", "row cap-row");
  row.dataset.id = c.id;
  row.setAttribute("aria-label", c.label);
  const status = capStatusText(c);
  const dot = el("span", `dot lead ${status.dot}`);
  dot.setAttribute("aria-hidden", "true");
  const title = el("div", "title");
  title.append(el("span", "cap-label", c.label), el("span", "pill", c.kind));
  if (c.muted) title.append(el("span", "pill muted", "muted"));
  if (c.unread) title.append(el("span", "pill unread cap-unread", `${c.unread} unread`));
  const meta = el("div", "meta");
  meta.append(el("span", "cap-status", status.text));
  const si = el("span", "mono cap-si", c.si);
  si.title = "Storage index";
  meta.append(si);
  const last = el("span", "cap-last");
  last.append(c.last_change ? `Last change: ${c.last_change} · ` : "No change yet");
  if (c.last_change_ms) last.append(when(c.last_change_ms));
  meta.append(last);
  const actions = el("div", "actions");
  actions.append(
    button("Rename", "ghost small cap-rename", () => rename(c), `Rename ${c.label}`),
    button(c.muted ? "Unmute" : "Mute", "ghost small cap-mute", () => mute(c), `${c.muted ? "Unmute" : "Mute"} ${c.label}`),
    button("Remove", "ghost small cap-remove", () => remove(c), `Remove ${c.label}`),
  );
  row.append(dot, title, actions, meta);
  return row;
}

/** The user's Tahoe aliases, each with a Watch button (or why it cannot be watched). */
async function refreshAliases() {
  const aliases = await invoke("list_aliases");
  const box = $("alias-box");
  box.hidden = !aliases.length;
  const list = $("alias-list");
  list.replaceChildren();
  for (const a of aliases) {
    const row = el("div", "alias-row");
    row.dataset.alias = a.name;
    row.append(el("span", "alias-name", `${a.name}:`), el("span", "pill", a.kind));
    if (a.watched_as) {
      row.append(el("span", "pill muted alias-watched", "watched"));
    } else if (a.refused) {
      row.append(el("span", "hint alias-refused", a.refused));
    } else {
      row.append(button("Watch", "primary small alias-watch", () => watchAlias(a), `Watch the alias ${a.name}`));
    }
    list.append(row);
  }
}

async function watchAlias(a) {
  try {
    await invoke("add_alias", { name: a.name, label: null, grid: chosenGrid() });
    openAdd(false);
  } catch (err) {
    $("add-error").textContent = String(err);
  }
  app.refresh();
}

/** The grid chosen in the add form; `null` (the only grid) when there is one or none. */
function chosenGrid() {
  const select = $("cap-grid");
  return $("cap-grid-row").hidden || !select.value ? null : select.value;
}

/** With several grids, the add form asks which one a cap belongs to: only that grid's
 *  servers hear of it and only its gateway sees it. */
async function refreshGrids() {
  const view = await invoke("list_servers");
  const select = $("cap-grid");
  const chosen = select.value;
  select.replaceChildren(...view.grids.map((g) => new Option(g.name, g.name)));
  if (view.grids.some((g) => g.name === chosen)) select.value = chosen;
  $("cap-grid-row").hidden = view.grids.length < 2;
}

export function openAdd(open) {
  $("add-card").hidden = !open;
  $("show-add").setAttribute("aria-expanded", String(open));
  if (open) {
    refreshAliases().catch((err) => { $("add-error").textContent = String(err); });
    refreshGrids().catch((err) => { $("add-error").textContent = String(err); });
    $("cap-input").focus();
  } else {
    $("add-card").reset();
    setFeedback("A cap is a password: it stays in your keyring and never leaves this machine.", "");
    $("write-warning").hidden = true;
    $("cap-add").disabled = true;
    $("cap-input").className = "";
    $("add-error").textContent = "";
    $("show-add").focus();
  }
}

function setFeedback(text, cls) {
  const f = $("cap-feedback");
  f.textContent = text;
  f.className = `feedback ${cls}`;
}

async function validateNow() {
  const text = $("cap-input").value;
  if (!text.trim()) {
    lastValidation = null;
    setFeedback("Paste a cap to check it.", "");
    $("cap-input").className = "";
    $("write-warning").hidden = true;
    $("cap-add").disabled = true;
    return;
  }
  const v = await invoke("validate_cap", { text });
  lastValidation = v;
  if (v.status === "ok") {
    setFeedback(`Valid ${v.kind} (${v.form}) · storage index ${v.si}`, "ok");
    $("cap-input").className = "valid";
    $("write-warning").hidden = !v.is_write;
    $("cap-add").disabled = false;
  } else {
    setFeedback(v.error, "error");
    $("cap-input").className = "invalid";
    $("write-warning").hidden = true;
    $("cap-add").disabled = true;
  }
}

async function rename(c) {
  const dialog = $("rename-dialog");
  $("rename-input").value = c.label;
  $("rename-error").textContent = "";
  dialog.showModal();
  $("rename-input").select();
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    try {
      await invoke("rename_cap", { id: c.id, label: $("rename-input").value });
    } catch (err) {
      $("add-error").textContent = String(err);
    }
    app.refresh();
  };
}

async function mute(c) {
  await invoke("set_muted", { id: c.id, muted: !c.muted }).catch((err) => { $("add-error").textContent = String(err); });
  app.refresh();
}

function remove(c) {
  confirmAction(
    "Stop watching?",
    `"${c.label}" will no longer be watched, and its cap will be deleted from your keyring. Its history stays.`,
    "Remove", "danger",
    async () => {
      await invoke("remove_cap", { id: c.id }).catch((err) => { $("add-error").textContent = String(err); });
      app.refresh();
    });
}

export function bind(appApi) {
  app = appApi;
  $("show-add").addEventListener("click", () => openAdd($("add-card").hidden));
  $("cap-cancel").addEventListener("click", () => openAdd(false));
  $("add-card").addEventListener("keydown", (e) => { if (e.key === "Escape") openAdd(false); });
  $("cap-input").addEventListener("input", () => {
    clearTimeout(validateTimer);
    validateTimer = setTimeout(validateNow, 120);
  });
  $("cap-reveal").addEventListener("click", () => {
    const input = $("cap-input");
    const reveal = input.type === "password";
    input.type = reveal ? "text" : "password";
    $("cap-reveal").textContent = reveal ? "Hide" : "Show";
    $("cap-reveal").setAttribute("aria-pressed", String(reveal));
  });
  $("add-card").addEventListener("submit", async (e) => {
    e.preventDefault();
    await validateNow();
    if (!lastValidation || lastValidation.status !== "ok") return;
    const label = $("cap-label").value.trim() || (lastValidation.kind === "folder" ? "Shared folder" : "Shared file");
    try {
      await invoke("add_cap", { text: $("cap-input").value, label, grid: chosenGrid() });
      openAdd(false);
      app.refresh();
    } catch (err) {
      $("add-error").textContent = String(err);
    }
  });
}
