// The Servers page: the grids, their updates servers and how each is doing; joining another
// grid.
import { invoke } from "../api.js";
import { $, el, button, emptyState } from "../dom.js";
import { bindJoinForm, bindOpenFile } from "../joining.js";

let app = null;
const serverDot = { connected: "ok", connecting: "warn", failing: "bad" };

export async function refresh() {
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
    list.append(emptyState("⛁", "No updates servers", "Join your grid with the invite code or the grid file your operator gave you. Until then, folders are checked through the gateway every few minutes."));
    return;
  }
  for (const s of view.servers) list.append(serverRow(s));
}

function serverRow(s) {
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
  return row;
}

async function reconnect() {
  await invoke("reconnect");
  setTimeout(() => app.refresh(), 300);
}

export function bind(appApi) {
  app = appApi;
  $("reconnect-all").addEventListener("click", reconnect);
  bindJoinForm("servers-join-form", { code: "servers-join-code", submit: "servers-join-submit", feedback: "servers-join-feedback" }, () => app.refresh());
  bindOpenFile("servers-open-file", "servers-join-feedback", () => app.refresh());
}
