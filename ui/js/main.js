// Tahoe Notifier's page: tabs, keyboard, the refresh loop and opening the item a notification
// or the tray asked for. Each page is a module with `refresh(status)` and `bind(app)`; the
// counts in the sidebar come from the app's status, never read back from the page.
import { invoke, listen, EVENTS } from "./api.js";
import { $ } from "./dom.js";
import * as watched from "./pages/watched.js";
import * as activity from "./pages/activity.js";
import * as news from "./pages/news.js";
import * as servers from "./pages/servers.js";
import * as settings from "./pages/settings.js";
import * as welcome from "./pages/welcome.js";

const pages = { watched, activity, news, servers, settings, welcome };
/** The pages with a tab, in the order Alt+1…5 and the arrow keys go through them. */
const tabbed = ["watched", "activity", "news", "servers", "settings"];
let current = "watched";
let target = null; // item a notification or the tray asked for
let started = false;

function show(page, focus) {
  if (!pages[page]) return;
  current = page;
  for (const p of Object.keys(pages)) {
    const tab = $(`tab-${p}`);
    const selected = p === page;
    if (tab) {
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected || (page === "welcome" && p === "watched") ? 0 : -1;
    }
    $(`page-${p}`).hidden = !selected;
  }
  if (focus && $(`tab-${page}`)) $(`tab-${page}`).focus();
  refresh();
}

function bindTabs() {
  $("tabs").addEventListener("click", (e) => {
    const tab = e.target.closest("[role=tab]");
    if (tab) show(tab.dataset.page);
  });
  $("tabs").addEventListener("keydown", (e) => {
    const i = Math.max(0, tabbed.indexOf(current));
    const next = { ArrowDown: i + 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowLeft: i - 1, Home: 0, End: tabbed.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    show(tabbed[(next + tabbed.length) % tabbed.length], true);
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
      show(tabbed[Number(e.key) - 1], true);
    }
  });
}

/* ---------- status ---------- */
const stateDot = { connected: "ok", degraded: "warn", offline: "bad", unread: "unread", paused: "paused" };

function showStatus(s) {
  const line = $("status-line");
  line.textContent = s.engine_error ? `Not running: ${s.engine_error}` : s.summary;
  line.dataset.state = s.tray_state;
  $("status-dot").className = `dot ${stateDot[s.tray_state] || ""}`;
  $("count-servers").textContent = s.servers ? `${s.connected}/${s.servers}` : "";
  $("count-watched").textContent = s.watched || "";
  $("count-activity").textContent = s.unread_changes || "";
  $("count-news").textContent = s.unread_news || "";
  showKeyringProblem(s.keyring_problem);
}

// An absent or locked keyring: nothing can be stored or watched until the user acts, and
// there is no other place for caps, so the banner (above every page) says what to do and
// adding is off.
function showKeyringProblem(problem) {
  const banner = $("keyring-banner");
  banner.hidden = !problem;
  banner.dataset.kind = problem ? problem.kind : "";
  $("keyring-title").textContent = problem ? problem.title : "";
  $("keyring-message").textContent = problem ? problem.message : "";
  $("keyring-detail").textContent = problem ? `Keyring says: ${problem.detail}` : "";
  $("show-add").disabled = Boolean(problem);
  if (problem && !$("add-card").hidden) watched.openAdd(false);
}

/* ---------- refresh loop ---------- */
let refreshing = null;
let again = false;

async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    try {
      const status = await invoke("app_status");
      showStatus(status);
      // Nothing set up: the window opens on the welcome page (once; the user may leave it).
      if (!started) {
        started = true;
        if (!status.configured && !target) {
          current = "welcome";
          show("welcome");
          return;
        }
      }
      await pages[current].refresh(status);
    } catch (err) {
      $("status-line").textContent = String(err);
    }
  })();
  await refreshing;
  refreshing = null;
  if (again) { again = false; refresh(); }
}

function openTarget(t) {
  if (!t) return;
  target = t;
  if (t.startsWith("change:")) show("activity");
  else if (t.startsWith("news:")) show("news");
  else show(t);
}

const app = {
  refresh,
  show,
  target: () => target,
  openAdd: () => watched.openAdd(true),
};

async function start() {
  bindTabs();
  for (const page of Object.values(pages)) page.bind(app);
  let timer = null;
  await listen(EVENTS.changed, () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 80);
  });
  await listen(EVENTS.openTarget, (e) => openTarget(e.payload));
  const pending = await invoke("take_open_target");
  if (pending) { started = true; openTarget(pending); }
  else await refresh();
  // Relative times age; a light refresh keeps them honest.
  setInterval(refresh, 30000);
  document.body.dataset.ready = "true";
  // Two frames: the callback of the second runs after the first state has been painted.
  requestAnimationFrame(() => requestAnimationFrame(() => invoke("page_drawn")));
}

start();
