// The News page: messages from the grids' operators.
import { invoke } from "../api.js";
import { $, el, button, emptyState, when } from "../dom.js";

let app = null;

export async function refresh() {
  const news = await invoke("list_news");
  const list = $("news-list");
  list.replaceChildren();
  if (!news.length) {
    list.append(emptyState("✉", "No news", "When your grid's operators post a message, it shows here."));
    return;
  }
  for (const n of news) list.append(newsItem(n));
}

function newsItem(n) {
  const item = el("article", `row news news-item severity-${n.severity}`);
  item.dataset.id = n.id;
  if (app.target() === `news:${n.grid}:${n.name}`) item.classList.add("target");
  const head = el("div", "news-head");
  head.append(el("span", `sev ${n.severity}`, n.severity), el("span", "news-title", n.title));
  if (!n.read) head.append(el("span", "pill unread", "new"));
  const body = el("div", "news-body", n.body);
  const meta = el("div", "meta");
  meta.append(el("span", null, n.grid), when(n.at_ms));
  if (n.expires_ms) meta.append(el("span", null, `until ${new Date(n.expires_ms).toLocaleString()}`));
  if (!n.read) {
    meta.append(button("Mark read", "ghost small news-read", async () => {
      await invoke("mark_news_read", { id: n.id });
      app.refresh();
    }, `Mark "${n.title}" read`));
  }
  item.append(head, body, meta);
  return item;
}

export function bind(appApi) {
  app = appApi;
}
