// Getting a grid: with an invite code from its operator, or from a grid file picked with the
// native file picker. Used by the welcome page and the Servers page, so both behave alike.
import { invoke } from "./api.js";
import { $, feedback } from "./dom.js";

function joinedText(j, verb) {
  const parts = [`${verb} "${j.grid}": ${j.servers} updates ${j.servers === 1 ? "server" : "servers"}`];
  if (j.news) parts.push("news");
  return `${parts.join(", ")}. Listings come through ${j.gateway_url} (from ${j.gateway_from}).`;
}

/**
 * Wires a join form: `ids` names its code input, submit button and feedback line. Calls
 * `done(joined)` after a join.
 */
export function bindJoinForm(formId, ids, done) {
  $(formId).addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $(ids.code);
    if (!input.value.trim()) {
      feedback(ids.feedback, "Type the code your grid's operator gave you, like 7-guitarist-revenge.", "error");
      return;
    }
    $(ids.submit).disabled = true;
    feedback(ids.feedback, "Meeting the operator's side through the invite mailbox…", "busy");
    try {
      const joined = await invoke("join_grid", { code: input.value });
      input.value = "";
      feedback(ids.feedback, joinedText(joined, "Joined"), "ok");
      done(joined);
    } catch (err) {
      feedback(ids.feedback, String(err), "error");
    } finally {
      $(ids.submit).disabled = false;
    }
  });
}

/** Wires a button that picks a grid file and imports it. */
export function bindOpenFile(buttonId, feedbackId, done) {
  $(buttonId).addEventListener("click", async () => {
    $(buttonId).disabled = true;
    feedback(feedbackId, "Choose the grid file in the window that opened…", "busy");
    try {
      const imported = await invoke("open_grid_file");
      if (!imported) {
        feedback(feedbackId, "No file chosen.", "");
        return;
      }
      feedback(feedbackId, joinedText(imported, "Imported"), "ok");
      done(imported);
    } catch (err) {
      feedback(feedbackId, String(err), "error");
    } finally {
      $(buttonId).disabled = false;
    }
  });
}
