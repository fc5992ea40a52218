// The Activity page: recorded changes, newest first, with what changed.
import { invoke } from "../api.js";
import { $, el, button, emptyState, when } from "../dom.js";

let app = null;

export async function refresh() {
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
  for (const ch of changes) list.append(changeRow(ch));
  const focused = list.querySelector(".target");
  if (focused) focused.scrollIntoView({ block: "center" });
}

function changeRow(ch) {
  const row = el("article", `row change change-row${ch.read ? "" : " unread"}`);
  row.dataset.id = ch.id;
  row.tabIndex = 0;
  if (app.target() === `change:${ch.id}`) row.classList.add("target");
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
  return row;
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
  app.refresh();
}

export function bind(appApi) {
  app = appApi;
  $("activity-filter").addEventListener("change", () => app.refresh());
  $("activity-unread").addEventListener("change", () => app.refresh());
  $("activity-mark-all").addEventListener("click", async () => {
    await invoke("mark_all_read", { capId: $("activity-filter").value || null });
    app.refresh();
  });
}
