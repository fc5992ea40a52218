// The one place the page talks to the app: command calls and the events it listens to.
// Every command returns ids, labels, states and counts, never a cap or a NURL.

export const invoke = (command, args) => window.__TAURI__.core.invoke(command, args);
export const listen = (event, handler) => window.__TAURI__.event.listen(event, handler);

/** The events the app emits (src-tauri/src/app.rs). */
export const EVENTS = {
  /** Something the page shows changed: refresh. */
  changed: "notifier://changed",
  /** A notification or the tray asked to show an item (its target string as payload). */
  openTarget: "notifier://open-target",
};
