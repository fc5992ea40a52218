// Settings → Magic Folder: link the magic-folder daemon so participants' changes are fetched
// on push, see each linked folder and its daemon, unlink, and the poll-interval suggestion.
import { invoke } from "../api.js";
import { $, el, button, emptyState, confirmAction } from "../dom.js";

let app = null;
const daemonDot = { running: "ok", stopped: "warn", unreachable: "bad" };
const daemonWords = { running: "daemon running", stopped: "daemon stopped", unreachable: "daemon not answering" };

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
      app.refresh();
    });
}

export async function refresh() {
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
      app.refresh();
    });
}

export function bind(appApi) {
  app = appApi;
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
    app.refresh();
  });
}
