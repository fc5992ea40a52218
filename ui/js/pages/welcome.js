// The welcome page: what the window opens on while nothing is set up. Three ways in: an
// invite code, a grid file (native picker), or the gateway of the user's own Tahoe node.
import { invoke } from "../api.js";
import { $, feedback } from "../dom.js";
import { bindJoinForm, bindOpenFile } from "../joining.js";

let app = null;

export async function refresh() {
  const node = await invoke("local_node");
  $("welcome-node-path").textContent = node ? node.path : "No Tahoe node folder found at ~/.tahoe.";
  $("welcome-node-detail").textContent = node
    ? (node.gateway_url
      ? `Its gateway is ${node.gateway_url}; it has ${node.aliases} ${node.aliases === 1 ? "alias" : "aliases"} you can watch.`
      : "It has no node.url yet: start the node once (tahoe run).")
    : "Choose the folder of your Tahoe node if it lives elsewhere.";
  $("welcome-use-node").disabled = !(node && node.gateway_url);
}

/** Once a grid or a gateway is set up: the Watched page, with the add form open. */
function setUp() {
  app.show("watched");
  app.openAdd();
}

export function bind(appApi) {
  app = appApi;
  bindJoinForm("join-form", { code: "join-code", submit: "join-submit", feedback: "join-feedback" }, setUp);
  bindOpenFile("welcome-open-file", "file-feedback", setUp);
  $("welcome-choose-node").addEventListener("click", async () => {
    try {
      const node = await invoke("choose_node_dir");
      if (node) feedback("node-feedback", `Using the Tahoe node at ${node.path}.`, "ok");
    } catch (err) {
      feedback("node-feedback", String(err), "error");
    }
    refresh();
  });
  $("welcome-use-node").addEventListener("click", async () => {
    try {
      const node = await invoke("use_local_node");
      feedback("node-feedback", `Listings now come through your node's gateway, ${node.gateway_url}.`, "ok");
      setUp();
    } catch (err) {
      feedback("node-feedback", String(err), "error");
    }
  });
  $("join-code-reveal").addEventListener("click", () => {
    const input = $("join-code");
    const reveal = input.type === "password";
    input.type = reveal ? "text" : "password";
    $("join-code-reveal").textContent = reveal ? "Hide" : "Show";
    $("join-code-reveal").setAttribute("aria-pressed", String(reveal));
  });
}
