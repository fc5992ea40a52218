// The Settings page: the gateway, quiet hours, which notifications and when during
// Do-Not-Disturb, start at login, where
// data lives; and the magic-folder link (its own module).
import { invoke } from "../api.js";
import { $, el } from "../dom.js";
import * as magicFolder from "./magic-folder.js";

let settingsLoaded = false;

// The kinds of notification the alert settings are chosen for: [key in `alerts`, element id,
// label, whether the kind's noun is plural].
const ALERT_KINDS = [
  ["changes", "set-alert-changes", "Changes", true],
  ["news", "set-alert-news", "News", false],
  ["critical_news", "set-alert-critical", "Critical news", false],
];

/** Fills the alert grid with one label and select per kind. */
function buildAlertSelects() {
  const grid = $("alert-grid");
  grid.replaceChildren();
  for (const [kind, id, label, plural] of ALERT_KINDS) {
    const them = plural ? "them" : "it";
    const labelNode = el("label", null, label);
    labelNode.htmlFor = id;
    const select = el("select");
    select.id = id;
    select.dataset.kind = kind;
    for (const [value, text] of [
      ["always", `Show ${them} anyway`],
      ["follow-dnd", `Hold ${them}, sum up after`],
      ["never", `Never show ${them}`],
    ]) {
      const option = el("option", null, text);
      option.value = value;
      select.append(option);
    }
    grid.append(labelNode, select);
  }
}

export async function refresh() {
  const s = await invoke("get_settings");
  if (!settingsLoaded || !$("settings-form").contains(document.activeElement)) {
    $("set-gateway").value = s.gateway_url || "";
    $("set-quiet-start").value = s.quiet_start || "";
    $("set-quiet-end").value = s.quiet_end || "";
    $(s.notify_for === "news_only" ? "set-notify-news" : "set-notify-all").checked = true;
    for (const select of document.querySelectorAll("select[data-kind]")) {
      select.value = s.alerts[select.dataset.kind];
    }
    $("set-autostart").checked = s.autostart;
    settingsLoaded = true;
  }
  await magicFolder.refresh();
  const dl = $("locations");
  dl.replaceChildren();
  for (const l of s.locations) dl.append(el("dt", null, l.what), el("dd", "mono", l.path));
}

export function bind(appApi) {
  buildAlertSelects();
  magicFolder.bind(appApi);
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
          alerts: Object.fromEntries(
            [...document.querySelectorAll("select[data-kind]")].map((s) => [s.dataset.kind, s.value]),
          ),
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
}
