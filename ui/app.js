// Tahoe Notifier's page. Everything it shows comes from the app's commands; it never sees a
// cap except the one the user pastes. All user-controlled text (labels, file names, news) is
// put on the page with textContent, never parsed as HTML.
"use strict";

const invoke = (cmd, args) => window.__TAURI__.core.invoke(cmd, args);
const listen = (name, fn) => window.__TAURI__.event.listen(name, fn);
const $ = (id) => document.getElementById(id);

/** Creates an element with a class and text (text via textContent only). */
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(text, cls, onClick, label) {
  const b = el("button", cls, text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function emptyState(icon, title, text) {
  const box = el("div", "empty");
  box.append(el("span", "big", icon), el("strong", null, title), el("span", null, text));
  return box;
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 45) return "just now";
  if (s < 90) return "a minute ago";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

function when(ms) {
  const t = el("time", null, ago(ms));
  t.dateTime = new Date(ms).toISOString();
  t.title = new Date(ms).toLocaleString();
  return t;
}

/* ---------- tabs ---------- */
const pages = ["watched", "activity", "news", "servers", "settings"];
let current = "watched";
let target = null; // item a notification or the tray asked for

function show(page, focus) {
  if (!pages.includes(page)) return;
  current = page;
  for (const p of pages) {
    const tab = $(`tab-${p}`);
    const selected = p === page;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`page-${p}`).hidden = !selected;
  }
  if (focus) $(`tab-${page}`).focus();
  refresh();
}

$("tabs").addEventListener("click", (e) => {
  const tab = e.target.closest("[role=tab]");
  if (tab) show(tab.dataset.page);
});
$("tabs").addEventListener("keydown", (e) => {
  const i = pages.indexOf(current);
  const next = { ArrowDown: i + 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowLeft: i - 1, Home: 0, End: pages.length - 1 }[e.key];
  if (next === undefined) return;
  e.preventDefault();
  show(pages[(next + pages.length) % pages.length], true);
});
// Alt+1…5 jump to a page from anywhere; Ctrl+W closes the window (the app stays in the tray).
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey && (e.key === "w" || e.key === "W")) {
    e.preventDefault();
    invoke("close_window");
    return;
  }
  if (e.altKey && e.key >= "1" && e.key <= "5") {
    e.preventDefault();
    show(pages[Number(e.key) - 1], true);
  }
});

/* ---------- status ---------- */
const stateDot = { connected: "ok", degraded: "warn", offline: "bad", unread: "unread", paused: "paused" };

async function refreshStatus() {
  const s = await invoke("app_status");
  const line = $("status-line");
  line.textContent = s.engine_error ? `Not running: ${s.engine_error}` : s.summary.replace(/^Tahoe Notifier: /, "");
  line.dataset.state = s.tray_state;
  $("status-dot").className = `dot ${stateDot[s.tray_state] || ""}`;
  $("count-servers").textContent = s.servers ? `${s.connected}/${s.servers}` : "";
  showKeyringProblem(s.keyring_problem);
  return s;
}

// An absent or locked keyring: nothing can be stored or watched until the user acts, and
// there is no other place for caps, so the banner says what to do and adding is off.
function showKeyringProblem(problem) {
  const banner = $("keyring-banner");
  banner.hidden = !problem;
  banner.dataset.kind = problem ? problem.kind : "";
  $("keyring-title").textContent = problem ? problem.title : "";
  $("keyring-message").textContent = problem ? problem.message : "";
  $("keyring-detail").textContent = problem ? `Keyring says: ${problem.detail}` : "";
  $("show-add").disabled = Boolean(problem);
  if (problem && !$("add-card").hidden) openAdd(false);
}

/* ---------- Watched ---------- */
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

async function refreshWatched() {
  const caps = await invoke("list_caps");
  $("count-watched").textContent = caps.length || "";
  const list = $("caps-list");
  list.replaceChildren();
  if (!caps.length) {
    list.append(emptyState("◎", "Nothing watched yet", "Add a folder or file cap to get a notification whenever it changes."));
    return caps;
  }
  for (const c of caps) {
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
    list.append(row);
  }
  return caps;
}

function openAdd(open) {
  $("add-card").hidden = !open;
  $("show-add").setAttribute("aria-expanded", String(open));
  if (open) {
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
    await invoke("add_cap", { text: $("cap-input").value, label });
    openAdd(false);
    refresh();
  } catch (err) {
    $("add-error").textContent = String(err);
  }
});

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
      alertInline(String(err));
    }
    refresh();
  };
}

async function mute(c) {
  await invoke("set_muted", { id: c.id, muted: !c.muted }).catch((err) => alertInline(String(err)));
  refresh();
}

function remove(c) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = "Stop watching?";
  $("confirm-ok").textContent = "Remove";
  $("confirm-text").textContent = `"${c.label}" will no longer be watched, and its cap will be deleted from your keyring. Its history stays.`;
  dialog.showModal();
  $("confirm-cancel").focus();
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    await invoke("remove_cap", { id: c.id }).catch((err) => alertInline(String(err)));
    refresh();
  };
}

function alertInline(text) {
  $("add-error").textContent = text;
}

/* ---------- Activity ---------- */
async function refreshActivity() {
  const filter = $("activity-filter");
  const caps = await invoke("list_caps");
  const chosen = filter.value;
  filter.replaceChildren(new Option("All watched", ""));
  for (const c of caps) filter.append(new Option(c.label, c.id));
  filter.value = caps.some((c) => c.id === chosen) ? chosen : "";

  const changes = await invoke("list_changes", { capId: filter.value || null, unreadOnly: $("activity-unread").checked });
  const list = $("activity-list");
  list.replaceChildren();
  if (!changes.length) {
    list.append(emptyState("↻", "No activity", "Changes to your watched folders and files appear here."));
    return;
  }
  for (const ch of changes) {
    const row = el("article", `row change change-row${ch.read ? "" : " unread"}`);
    row.dataset.id = ch.id;
    row.tabIndex = 0;
    if (target === `change:${ch.id}`) row.classList.add("target");
    const dot = el("span", `dot lead ${ch.read ? "" : "unread"}`);
    dot.setAttribute("aria-hidden", "true");
    const title = el("div", "title");
    title.append(el("span", "summary", ch.summary));
    if (ch.while_away) title.append(el("span", "pill muted", "while away"));
    const meta = el("div", "meta");
    meta.append(el("span", null, ch.label), when(ch.at_ms));
    const actions = el("div", "actions");
    if (!ch.read) actions.append(button("Mark read", "ghost small change-read", () => markRead(ch.id), `Mark "${ch.summary}" read`));
    row.append(dot, title, actions, meta);
    const details = changeDetails(ch.details);
    if (details) row.append(details);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter" && !ch.read) markRead(ch.id); });
    list.append(row);
  }
  const focused = list.querySelector(".target");
  if (focused) focused.scrollIntoView({ block: "center" });
}

function changeDetails(d) {
  if (!d || typeof d !== "object") return null;
  const box = el("div", "details");
  for (const kind of ["added", "modified", "removed"]) {
    const names = Array.isArray(d[kind]) ? d[kind] : [];
    for (const name of names) box.append(el("span", `chip ${kind}`, `${kind === "added" ? "+ " : kind === "removed" ? "− " : "~ "}${name}`));
    const total = d.counts && d.counts[kind];
    if (total && total > names.length) box.append(el("span", "chip", `${total - names.length} more ${kind}`));
  }
  if (d.kind === "file" && d.size !== undefined) box.append(el("span", "chip modified", `now ${d.size} bytes`));
  return box.childElementCount ? box : null;
}

async function markRead(id) {
  await invoke("mark_change_read", { id });
  refresh();
}

$("activity-filter").addEventListener("change", () => refresh());
$("activity-unread").addEventListener("change", () => refresh());
$("activity-mark-all").addEventListener("click", async () => {
  await invoke("mark_all_read", { capId: $("activity-filter").value || null });
  refresh();
});

/* ---------- News ---------- */
async function refreshNews() {
  const news = await invoke("list_news");
  const unread = news.filter((n) => !n.read).length;
  $("count-news").textContent = unread || "";
  const list = $("news-list");
  list.replaceChildren();
  if (!news.length) {
    list.append(emptyState("✉", "No news", "When your grid's operators post a message, it shows here."));
    return;
  }
  for (const n of news) {
    const item = el("article", `row news news-item severity-${n.severity}`);
    item.dataset.id = n.id;
    if (target === `news:${n.grid}:${n.name}`) item.classList.add("target");
    const head = el("div", "news-head");
    head.append(el("span", `sev ${n.severity}`, n.severity), el("span", "news-title", n.title));
    if (!n.read) head.append(el("span", "pill unread", "new"));
    const body = el("div", "news-body", n.body);
    const meta = el("div", "meta");
    meta.append(el("span", null, n.grid), when(n.at_ms));
    if (n.expires_ms) meta.append(el("span", null, `until ${new Date(n.expires_ms).toLocaleString()}`));
    if (!n.read) meta.append(button("Mark read", "ghost small news-read", async () => { await invoke("mark_news_read", { id: n.id }); refresh(); }, `Mark "${n.title}" read`));
    item.append(head, body, meta);
    list.append(item);
  }
}

/* ---------- Servers ---------- */
const serverDot = { connected: "ok", connecting: "warn", failing: "bad" };

async function refreshServers() {
  const view = await invoke("list_servers");
  const grids = $("grids");
  grids.replaceChildren();
  for (const g of view.grids) {
    const chip = el("div", "grid-chip");
    chip.append(el("strong", null, g.name), el("span", "mono", g.gateway_url), el("span", null, g.has_news ? " · news" : ""));
    grids.append(chip);
  }
  const list = $("servers-list");
  list.replaceChildren();
  if (!view.servers.length) {
    list.append(emptyState("⛁", "No updates servers", "Import the grid file your operator gave you. Until then, folders are checked through the gateway every few minutes."));
    return;
  }
  for (const s of view.servers) {
    const row = el("article", "row server-row");
    row.dataset.id = s.id;
    const dot = el("span", `dot lead ${serverDot[s.state] || ""}`);
    dot.setAttribute("aria-hidden", "true");
    const title = el("div", "title");
    title.append(el("span", null, s.name), el("span", `pill ${s.state === "connected" ? "" : "muted"} server-state`, s.state));
    const meta = el("div", "meta");
    meta.append(el("span", "mono", s.address));
    if (s.grid) meta.append(el("span", null, s.grid));
    if (s.retry_in_s !== null && s.retry_in_s !== undefined) meta.append(el("span", null, `retrying in ${s.retry_in_s} s`));
    const actions = el("div", "actions");
    actions.append(button("Reconnect", "ghost small", reconnect, `Reconnect ${s.name}`));
    row.append(dot, title, actions, meta);
    if (s.last_error) row.append(el("div", "error-text", `Last error: ${s.last_error}`));
    list.append(row);
  }
}

async function reconnect() {
  await invoke("reconnect");
  setTimeout(refresh, 300);
}

$("reconnect-all").addEventListener("click", reconnect);
$("import-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = $("import-feedback");
  try {
    const r = await invoke("import_grid_file", { path: $("grid-path").value });
    f.textContent = `Imported grid "${r.grid}" with ${r.servers} updates servers.`;
    f.className = "feedback ok";
    $("grid-path").value = "";
  } catch (err) {
    f.textContent = String(err);
    f.className = "feedback error";
  }
  refresh();
});

/* ---------- Settings ---------- */
let settingsLoaded = false;

async function refreshSettings() {
  const s = await invoke("get_settings");
  if (!settingsLoaded || !$("settings-form").contains(document.activeElement)) {
    $("set-gateway").value = s.gateway_url || "";
    $("set-quiet-start").value = s.quiet_start || "";
    $("set-quiet-end").value = s.quiet_end || "";
    $(s.notify_for === "news_only" ? "set-notify-news" : "set-notify-all").checked = true;
    $("set-autostart").checked = s.autostart;
    settingsLoaded = true;
  }
  await refreshMagicFolder();
  const dl = $("locations");
  dl.replaceChildren();
  for (const l of s.locations) dl.append(el("dt", null, l.what), el("dd", "mono", l.path));
}

$("settings-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = $("settings-feedback");
  try {
    await invoke("set_settings", {
      settings: {
        gateway_url: $("set-gateway").value,
        quiet_start: $("set-quiet-start").value,
        quiet_end: $("set-quiet-end").value,
        notify_for: document.querySelector("input[name=notify]:checked")?.value || "all",
      },
    });
    f.textContent = "Saved.";
    f.className = "feedback ok";
  } catch (err) {
    f.textContent = String(err);
    f.className = "feedback error";
  }
});
$("set-autostart").addEventListener("change", async (e) => {
  try {
    e.target.checked = await invoke("set_autostart", { enabled: e.target.checked });
  } catch (err) {
    $("settings-feedback").textContent = String(err);
    $("settings-feedback").className = "feedback error";
  }
});

/* ---------- Settings: Magic Folder ---------- */
const daemonDot = { running: "ok", stopped: "warn", unreachable: "bad" };
const daemonWords = { running: "daemon running", stopped: "daemon stopped", unreachable: "daemon not answering" };

function confirmAction(title, text, okLabel, okClass, action) {
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

function mfFeedback(text, cls) {
  $("mf-feedback").textContent = text;
  $("mf-feedback").className = `feedback ${cls || ""}`;
}

function pollSuggestion(f) {
  const box = el("div", "mf-poll");
  const p = f.poll;
  if (!p) {
    if (f.daemon === "stopped") {
      box.append(el("span", null, "With the daemon stopped, magic-folder's own poll (a safety net once linked) can be set to one an hour. "));
      box.append(button("Set a 1-hour poll…", "ghost small mf-apply", () => applyPoll(f), `Set a 1-hour poll for ${f.folder}`));
      return box;
    }
    return null;
  }
  if (p.current_secs >= p.suggested_secs) {
    box.append(el("span", null, `magic-folder polls every ${p.current_secs} s: already as rare as it needs to be.`));
    return box;
  }
  const line = el("p", "mf-poll-text");
  line.append(
    `magic-folder polls this folder every ${p.current_secs} s (${Math.round(p.polls_per_hour_now)} polls/hour, ${p.directory_reads_per_poll} directory reads each, ≈${p.traffic_now}/hour). `,
    "Linked, a poll every hour is enough as a safety net: ≈", el("strong", null, `${p.traffic_suggested}/hour`),
    ", saving ", el("strong", "mf-saved", `≈${p.traffic_saved}/hour`), ".",
  );
  const how = el("p", "mf-poll-how");
  how.append("magic-folder cannot change it while it runs: stop the daemon, run", el("code", "mf-command", p.command), "then start the daemon again. (With the daemon stopped, this page offers to set it for you.)");
  box.append(line, how);
  return box;
}

function applyPoll(f) {
  confirmAction(
    "Set a 1-hour poll?",
    `magic-folder will check "${f.folder}" for others' changes once an hour on its own (the notifier still tells it at once). This edits the stopped daemon's state database in ${f.config_dir}; start the daemon afterwards.`,
    "Set 1-hour poll", "primary",
    async () => {
      try {
        const before = await invoke("apply_magic_folder_poll_interval", { configDir: f.config_dir, folder: f.folder });
        mfFeedback(`"${f.folder}" now polls every hour (it was every ${before} s). Start the daemon again.`, "ok");
      } catch (err) {
        mfFeedback(String(err), "error");
      }
      refresh();
    });
}

async function refreshMagicFolder() {
  const view = await invoke("list_magic_folders");
  if (view.default_config_dir) $("mf-config").placeholder = view.default_config_dir;
  const list = $("mf-list");
  list.replaceChildren();
  if (!view.folders.length) {
    list.append(emptyState("⇄", "No folder linked", "Link your magic-folder daemon to hear of others' changes as they happen."));
    return;
  }
  for (const f of view.folders) {
    const row = el("article", "row mf-row");
    row.dataset.folder = f.folder;
    row.setAttribute("aria-label", `magic-folder ${f.folder}`);
    const dot = el("span", `dot lead ${daemonDot[f.daemon] || ""}`);
    dot.setAttribute("aria-hidden", "true");
    const title = el("div", "title");
    title.append(el("span", "mf-folder", f.folder), el("span", "pill mf-own", `you are ${f.own_name}`),
      el("span", `pill ${f.daemon === "running" ? "" : "muted"} mf-daemon`, daemonWords[f.daemon] || f.daemon));
    const meta = el("div", "meta");
    meta.append(el("span", "mf-participants", f.participants.length
      ? `Watching ${f.participants.join(", ")}`
      : "Nobody else in this folder yet"));
    const dir = el("span", "mono", f.config_dir);
    dir.title = "magic-folder config directory";
    meta.append(dir);
    const actions = el("div", "actions");
    const toggle = el("label", "check small-check");
    const box = el("input");
    box.type = "checkbox";
    box.className = "mf-conflicts";
    box.checked = f.conflicts_only;
    box.addEventListener("change", async () => {
      try {
        await invoke("set_magic_folder_conflicts_only", { configDir: f.config_dir, folder: f.folder, conflictsOnly: box.checked });
        mfFeedback(box.checked ? `"${f.folder}": you will be told about conflicts only.` : `"${f.folder}": you will be told about every change.`, "ok");
      } catch (err) {
        box.checked = !box.checked;
        mfFeedback(String(err), "error");
      }
    });
    toggle.append(box, " Only tell me about conflicts");
    actions.append(toggle, button("Unlink", "ghost small mf-unlink", () => unlinkFolder(f), `Unlink ${f.folder}`));
    row.append(dot, title, actions, meta);
    if (f.activity) row.append(el("div", `mf-activity${f.activity_failed ? " failed" : ""}`, f.activity));
    if (f.daemon_error && f.daemon !== "stopped") row.append(el("div", "error-text", f.daemon_error));
    const poll = pollSuggestion(f);
    if (poll) row.append(poll);
    list.append(row);
  }
}

function unlinkFolder(f) {
  confirmAction(
    "Unlink this folder?",
    `You will no longer be told about changes in "${f.folder}", and the participants' directories linking added stop being watched. magic-folder itself keeps syncing.`,
    "Unlink", "danger",
    async () => {
      try {
        const removed = await invoke("unlink_magic_folder", { configDir: f.config_dir, folder: f.folder });
        mfFeedback(`Unlinked "${f.folder}" (${removed} watched ${removed === 1 ? "directory" : "directories"} removed).`, "ok");
      } catch (err) {
        mfFeedback(String(err), "error");
      }
      refresh();
    });
}

$("mf-link-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const b = $("mf-link");
  b.disabled = true;
  mfFeedback("Asking the magic-folder daemon…");
  try {
    const linked = await invoke("link_magic_folders", { configDir: $("mf-config").value, conflictsOnly: $("mf-conflicts-only").checked });
    mfFeedback(`Linked ${linked.map((l) => `"${l.folder}" (${l.participants} ${l.participants === 1 ? "participant" : "participants"} watched; you are ${l.own_name})`).join(", ")}.`, "ok");
  } catch (err) {
    mfFeedback(String(err), "error");
  } finally {
    b.disabled = false;
  }
  refresh();
});

/* ---------- refresh loop ---------- */
let refreshing = null;
let again = false;

async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    try {
      const status = await refreshStatus();
      $("count-activity").textContent = "";
      if (current === "watched") await refreshWatched();
      if (current === "activity") await refreshActivity();
      if (current === "news") await refreshNews();
      if (current === "servers") await refreshServers();
      if (current === "settings") await refreshSettings();
      if (current !== "news") await refreshNewsCount();
      if (current !== "watched") $("count-watched").textContent = (await invoke("list_caps")).length || "";
      const unreadChanges = status.unread - Number($("count-news").textContent || 0);
      $("count-activity").textContent = unreadChanges > 0 ? unreadChanges : "";
    } catch (err) {
      $("status-line").textContent = String(err);
    }
  })();
  await refreshing;
  refreshing = null;
  if (again) { again = false; refresh(); }
}

async function refreshNewsCount() {
  const news = await invoke("list_news");
  $("count-news").textContent = news.filter((n) => !n.read).length || "";
}

function openTarget(t) {
  if (!t) return;
  target = t;
  if (t.startsWith("change:")) show("activity");
  else if (t.startsWith("news:")) show("news");
  else show(t);
}

async function start() {
  let timer = null;
  await listen("notifier://changed", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 80);
  });
  await listen("notifier://open-target", (e) => openTarget(e.payload));
  const pending = await invoke("take_open_target");
  if (pending) openTarget(pending);
  else refresh();
  // Relative times age; a light refresh keeps them honest.
  setInterval(refresh, 30000);
  document.body.dataset.ready = "true";
}

start();
