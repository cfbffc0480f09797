// Every tenant's usage (the admin API's /tenants): instances live, running, waiting and
// finished, steps, the creates its caps throttled and its limits; one workflow or all, sorted,
// paged. The filters are in the URL (?workflow=&order=&page=), so a view survives a reload.

import { APIError, BASE, api, apiPath, pageUrl } from "../api.js";
import { clock, html, render, shortScope, tenantCell, time } from "../format.js";
import { poller } from "../poll.js";
import { crumbs } from "../ui.js";

const EVERY = 5000;
const PER_PAGE = 50;
const ORDERS = [
  ["live", "live instances"],
  ["instances", "instances in all"],
  ["steps", "steps"],
  ["recent", "latest change"],
];

function readFilters(query) {
  const page = Number.parseInt(query.get("page") || "1", 10);
  const order = query.get("order") || "live";
  return {
    workflow: query.get("workflow") || "",
    order: ORDERS.some(([o]) => o === order) ? order : "live",
    page: Number.isFinite(page) && page > 0 ? page : 1,
  };
}

/** A tenant's limits, `name value` each; a dash when none are set. */
function limitsCell(limits) {
  if (!limits || typeof limits !== "object" || !Object.keys(limits).length) {
    return html`<span class="muted" title="no limits set">—</span>`;
  }
  return html`<span class="limits">${Object.entries(limits).map(([k, v]) =>
    html`<span class="limit" data-limit="${k}"><span class="muted">${k}</span>
      ${typeof v === "object" ? JSON.stringify(v) : String(v)}</span>`)}</span>`;
}

const n = (value) => (value ?? 0).toLocaleString("en-US");

export function tenantsView(root, query) {
  const f = readFilters(query);
  crumbs([["workflows", BASE], ["tenants", pageUrl.tenants()]]);
  render(root, html`
    <div class="title"><h1>Tenants</h1>
      <span class="muted" id="tenant-totals" data-testid="tenant-totals"></span></div>
    <section class="panel">
      <form class="filters" id="t-filters" autocomplete="off">
        <label>Workflow <select name="workflow" id="t-workflow">
          <option value="">all</option></select></label>
        <label>Sort by <select name="order" id="t-order">
          ${ORDERS.map(([o, label]) => html`<option value="${o}">${label}</option>`)}
        </select></label>
      </form>
      <div id="t-list"><p class="muted">Loading…</p></div>
      <div class="pager" id="t-pager"></div>
    </section>`);
  const $ = (sel) => root.querySelector(sel);
  $("#t-order").value = f.order;

  const apply = () => {
    history.replaceState(null, "", pageUrl.tenants(f));
    loop.now();
  };
  $("#t-order").addEventListener("change", (ev) => { f.order = ev.target.value; f.page = 1; apply(); });
  $("#t-workflow").addEventListener("change", (ev) => {
    f.workflow = ev.target.value;
    f.page = 1;
    apply();
  });
  $("#t-pager").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-page]");
    if (!b) return;
    f.page = Number(b.dataset.page);
    apply();
  });
  api(apiPath.workflows()).then(({ result }) => {
    const select = $("#t-workflow");
    if (!select) return; // the page was left meanwhile
    render(select, [html`<option value="">all</option>`,
      ...result.map((w) => html`<option value="${w.name}">${w.name}</option>`)]);
    select.value = f.workflow;
  }, () => {});

  // A tenant's link: its instances, on its workflow's page (the one chosen here).
  const instancesLink = (t, label) => (f.workflow
    ? html`<a href="${pageUrl.workflow(f.workflow, { scope: t.scope })}">${label}</a>` : label);

  async function tick() {
    let got;
    try {
      got = await api(apiPath.allTenants(), {
        query: { workflow: f.workflow || undefined, order: f.order, page: f.page,
                 per_page: PER_PAGE },
      });
    } catch (e) {
      if (e instanceof APIError && e.status === 404) {
        render($("#t-list"), html`<p class="empty">No workflow named <b>${f.workflow}</b>.
          <a href="${pageUrl.tenants()}">All tenants</a></p>`);
        return;
      }
      throw e;
    }
    const rows = got.result;
    const info = got.result_info;
    const totals = info.totals || {};
    const instances = Object.values(totals.instances || {}).reduce((a, b) => a + b, 0);
    $("#tenant-totals").textContent = `${n(info.total_count)} tenant${
      info.total_count === 1 ? "" : "s"} · ${n(instances)} instances · ${n(totals.steps)} steps`;
    render($("#t-list"), rows.length ? html`<div class="table-wrap">
      <table class="grid tenant-usage" data-testid="tenant-usage"><thead><tr>
        <th>Tenant</th><th class="num">Live</th><th class="num">Running</th>
        <th class="num">Waiting</th><th class="num">Finished</th><th class="num">Steps</th>
        <th class="num" title="creates its caps refused or delayed">Throttled</th>
        <th>Limits</th><th class="wide">Last change</th></tr></thead><tbody>
      ${rows.map((t) => html`<tr data-testid="tenant-usage-row" data-scope="${t.scope}"
          data-tenant="${t.tenant ?? ""}">
        <td>${instancesLink(t, tenantCell(t.tenant, t.scope))}<br>${shortScope(t.scope)}</td>
        <td class="num" data-field="live">${n(t.live)}</td>
        <td class="num" data-field="running">${n(t.running)}</td>
        <td class="num" data-field="waiting">${n(t.waiting)}</td>
        <td class="num" data-field="finished">${n(t.finished)}</td>
        <td class="num" data-field="steps">${n(t.steps)}</td>
        <td class="num ${t.throttled ? "throttled" : ""}" data-field="throttled">${n(t.throttled)}</td>
        <td data-field="limits">${limitsCell(t.limits)}</td>
        <td class="wide">${time(t.last_active_on)}</td></tr>`)}</tbody></table></div>`
      : html`<p class="empty">No tenants${f.workflow ? html` in <b>${f.workflow}</b>` : ""}.</p>`);
    const pages = info.total_pages || 1;
    render($("#t-pager"), html`<span class="muted">page ${f.page} of ${pages} · updated
        ${clock(new Date().toISOString())}</span>
      <button type="button" data-page="${f.page - 1}" ${f.page <= 1 ? html`disabled` : ""}>
        ‹ previous</button>
      <button type="button" data-page="${f.page + 1}" ${f.page >= pages ? html`disabled` : ""}>
        next ›</button>`);
  }

  const loop = poller(tick, EVERY);
  return loop;
}
