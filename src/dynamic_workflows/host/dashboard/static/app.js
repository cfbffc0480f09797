// The dashboard's router: the view is chosen from the path, so every page has a URL that works
// as a link and on reload. Links inside the dashboard change the page without reloading it.

import { BASE, takeTokenFromHash } from "./api.js";
import { html, render } from "./format.js";
import { crumbs } from "./ui.js";
import { instanceView } from "./views/instance.js";
import { tenantsView } from "./views/tenants.js";
import { workflowView, workflowsView } from "./views/workflows.js";

const root = document.getElementById("view");
let current = null;
let shown = null; // the path of the current view (its query is the view's own: filters)

function parts() {
  const rest = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
  return rest.split("/").filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
}

function route() {
  if (current && shown === location.pathname) {
    current.hashChanged?.(); // back/forward between a page and one of its steps
    return;
  }
  shown = location.pathname;
  current?.stop();
  current = null;
  window.scrollTo(0, 0);
  const p = parts();
  const query = new URLSearchParams(location.search);
  if (p.length === 0) {
    current = workflowsView(root);
  } else if (p[0] === "tenants" && p.length === 1) {
    current = tenantsView(root, query);
  } else if (p[0] === "workflows" && p.length === 2) {
    current = workflowView(root, p[1], query);
  } else if (p[0] === "workflows" && p.length === 4 && p[2] === "instances") {
    current = instanceView(root, p[1], p[3], query.has("scope") ? query.get("scope") : null);
  } else {
    crumbs([["workflows", BASE], ["not found", ""]]);
    render(root, html`<p class="empty">No such page. <a href="${BASE}">All workflows</a></p>`);
  }
}

/** Go to `url` (a dashboard page) as a link would. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  shown = null;
  route();
}

document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey ||
      ev.altKey) return;
  const a = ev.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE) ||
      url.pathname.startsWith(BASE + "static/") || url.pathname.startsWith(BASE + "api/")) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  ev.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});
window.addEventListener("popstate", route);
window.addEventListener("hashchange", () => current?.hashChanged?.());
window.addEventListener("dwf:navigate", (ev) => navigate(ev.detail.url, ev.detail));

takeTokenFromHash();
route();
