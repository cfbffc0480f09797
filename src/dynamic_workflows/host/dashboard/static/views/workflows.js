// The workflows (home) and one workflow's instances: counts per status and per tenant, filters
// by status, tenant and id, paging. Both refresh themselves.

import { APIError, BASE, api, apiPath, pageUrl } from "../api.js";
import {
  STATUSES, badge, clock, duration, html, ms, render, shortScope, tenantCell, time,
} from "../format.js";
import { poller } from "../poll.js";
import { crumbs } from "../ui.js";

const LIST_EVERY = 2000;
const TENANTS_EVERY = 3; // refreshes of the list per refresh of the tenants (a longer read)
const PER_PAGE = 25; // unless the URL says ?per_page= (1 to 100)
const TENANTS_SHOWN = 50; // the tenants beside the list: those with the most live instances

const countChips = (counts, href) => STATUSES.concat(Object.keys(counts || {})
  .filter((s) => !STATUSES.includes(s)))
  .filter((s) => counts?.[s])
  .map((s) => html`<a class="chip" href="${href(s)}" data-status="${s}">${badge(s)}
    <b class="n">${counts[s]}</b></a>`);

export function workflowsView(root) {
  crumbs([["workflows", BASE]]);
  render(root, html`<div class="title"><h1>Workflows</h1>
      <a href="${pageUrl.tenants()}" data-testid="tenants-link">Tenants ›</a></div>
    <section class="panel" id="wf-list"><p class="muted">Loading…</p></section>`);
  const list = root.querySelector("#wf-list");
  return poller(async () => {
    const { result } = await api(apiPath.workflows());
    if (!result.length) {
      render(list, html`<p class="empty">This project declares no workflow.</p>`);
      return;
    }
    render(list, html`<table class="grid workflows"><thead><tr><th>Workflow</th><th>Class</th>
      <th>Binding</th><th>Instances</th><th class="num">Total</th></tr></thead><tbody>
      ${result.map((w) => {
        const total = Object.values(w.instances || {}).reduce((a, b) => a + b, 0);
        const chips = countChips(w.instances, (s) => pageUrl.workflow(w.name, { status: s }));
        return html`<tr data-testid="workflow-row" data-workflow="${w.name}">
          <td><a href="${pageUrl.workflow(w.name)}"><b>${w.name}</b></a></td>
          <td><code>${w.class_name}</code></td><td><code>${w.binding}</code></td>
          <td><div class="chips">${chips.length ? chips
            : html`<span class="muted">none</span>`}</div></td>
          <td class="num">${total}</td></tr>`;
      })}</tbody></table>`);
  }, LIST_EVERY);
}

/** The filters of a workflow's page, as in its URL: status, scope (null: every tenant; "": the
 * instances without one), id (exact) and page. */
function readFilters(query) {
  const page = Number.parseInt(query.get("page") || "1", 10);
  const perPage = Number.parseInt(query.get("per_page") || String(PER_PAGE), 10);
  return {
    status: query.get("status") || "",
    scope: query.has("scope") ? query.get("scope") : null,
    id: query.get("id") || "",
    page: Number.isFinite(page) && page > 0 ? page : 1,
    perPage: Number.isFinite(perPage) && perPage >= 1 && perPage <= 100 ? perPage : PER_PAGE,
  };
}

function filtersUrl(wf, f) {
  const q = new URLSearchParams();
  if (f.status) q.set("status", f.status);
  if (f.scope !== null) q.set("scope", f.scope);
  if (f.id) q.set("id", f.id);
  if (f.page > 1) q.set("page", String(f.page));
  if (f.perPage && f.perPage !== PER_PAGE) q.set("per_page", String(f.perPage));
  const s = q.toString();
  return pageUrl.workflow(wf) + (s ? "?" + s : "");
}

export function workflowView(root, wf, query) {
  const f = readFilters(query);
  let tenants = [];
  let tenantInfo = null;
  let ticks = 0;
  crumbs([["workflows", BASE], [wf, pageUrl.workflow(wf)]]);
  render(root, html`
    <div class="title"><h1>${wf}</h1><span class="muted" id="wf-class"></span></div>
    <div class="chips counts" id="counts" data-testid="status-counts"></div>
    <div class="columns">
      <section class="panel grow">
        <form class="filters" id="filters" autocomplete="off">
          <label>Status <select name="status" id="f-status">
            <option value="">all</option>
            ${STATUSES.map((s) => html`<option value="${s}">${s}</option>`)}
          </select></label>
          <label>Tenant <select name="scope" id="f-scope"></select></label>
          <label>Id <input name="id" id="f-id" type="search" placeholder="exact instance id"
                 size="22" spellcheck="false"></label>
          <button type="submit">Search</button>
          <a href="${pageUrl.workflow(wf)}" class="clear" id="f-clear">clear filters</a>
        </form>
        <div id="instances"><p class="muted">Loading…</p></div>
        <div class="pager" id="pager"></div>
      </section>
      <aside class="panel tenants">
        <h2>Tenants</h2>
        <div id="tenants"><p class="muted">Loading…</p></div>
      </aside>
    </div>`);
  const $ = (sel) => root.querySelector(sel);
  api(apiPath.workflow(wf)).then(({ result }) => {
    // The page may have been left (and its elements replaced) while this was in flight.
    const el = $("#wf-class");
    if (el) el.textContent = `class ${result.class_name} · binding ${result.binding}`;
  }, () => {}); // a missing workflow is said by the listing
  $("#f-status").value = f.status;
  $("#f-id").value = f.id;

  const apply = () => {
    history.replaceState(null, "", filtersUrl(wf, f));
    $("#f-clear").hidden = !(f.status || f.scope !== null || f.id);
    loop.now();
  };
  $("#f-status").addEventListener("change", (ev) => { f.status = ev.target.value; f.page = 1; apply(); });
  $("#f-scope").addEventListener("change", (ev) => {
    const v = ev.target.value;
    f.scope = v === "*" ? null : v.slice(1);
    f.page = 1;
    apply();
  });
  $("#filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    f.id = $("#f-id").value.trim();
    f.page = 1;
    apply();
  });
  $("#pager").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-page]");
    if (!b) return;
    f.page = Number(b.dataset.page);
    apply();
  });
  $("#tenants").addEventListener("click", (ev) => {
    const row = ev.target.closest("tr[data-scope]");
    if (!row || ev.target.closest("a")) return;
    f.scope = f.scope === row.dataset.scope ? null : row.dataset.scope;
    f.page = 1;
    apply();
  });
  $("#counts").addEventListener("click", (ev) => {
    const chip = ev.target.closest("a.chip");
    if (!chip) return;
    ev.preventDefault();
    f.status = chip.dataset.status === f.status ? "" : chip.dataset.status || "";
    f.page = 1;
    $("#f-status").value = f.status;
    apply();
  });
  $("#f-clear").hidden = !(f.status || f.scope !== null || f.id);

  function scopeOptions() {
    const known = tenants.map((t) => t.scope);
    const options = [html`<option value="*">all</option>`,
      ...tenants.map((t) => html`<option value="${"=" + t.scope}">${t.tenant ??
        (t.scope ? t.scope.slice(0, 12) : "(no tenant)")}</option>`)];
    if (f.scope !== null && !known.includes(f.scope)) {
      options.push(html`<option value="${"=" + f.scope}">${f.scope ? f.scope.slice(0, 12)
        : "(no tenant)"}</option>`);
    }
    const select = $("#f-scope");
    if (select.matches(":focus")) return; // do not close it under the user's pointer
    render(select, options);
    select.value = f.scope === null ? "*" : "=" + f.scope;
  }

  function renderTenants() {
    if (!tenants.length) {
      render($("#tenants"), html`<p class="muted">No instances yet.</p>`);
      return;
    }
    render($("#tenants"), html`<table class="grid compact"><thead><tr><th>Tenant</th>
      <th>Instances</th><th class="num">Total</th></tr></thead><tbody>
      ${tenants.map((t) => html`<tr class="pick ${f.scope === t.scope ? "on" : ""}"
          data-scope="${t.scope}" data-testid="tenant-row" title="scope ${t.scope || "(none)"}">
        <td>${tenantCell(t.tenant, t.scope)}<br>${shortScope(t.scope)}</td>
        <td><div class="chips">${countChips(t.instances, (s) =>
          filtersUrl(wf, { ...f, status: s, scope: t.scope, page: 1 }))}</div></td>
        <td class="num">${t.total}</td></tr>`)}</tbody></table>
      <p class="muted">${tenantInfo && tenantInfo.total_count > tenants.length
        ? `${tenantInfo.total_count - tenants.length} more, fewer live instances · ` : ""}<a
        href="${pageUrl.tenants({ workflow: wf })}" data-testid="tenants-usage-link">usage
        and limits ›</a></p>`);
  }

  async function tick() {
    if (ticks++ % TENANTS_EVERY === 0) {
      const got = await api(apiPath.tenants(wf), {
        query: { per_page: TENANTS_SHOWN, steps: "false" }, // not shown here: not counted
      });
      tenants = got.result;
      tenantInfo = got.result_info;
      renderTenants();
    }
    scopeOptions();
    let listed;
    try {
      listed = await api(apiPath.instances(wf), {
        query: { status: f.status || undefined, scope: f.scope ?? undefined, id: f.id || undefined,
                 page: f.page, per_page: f.perPage },
      });
    } catch (e) {
      if (e instanceof APIError && e.status === 404) {
        render(root, html`<p class="empty">No workflow named <b>${wf}</b>.
          <a href="${BASE}">All workflows</a></p>`);
        loop.stop();
        return;
      }
      throw e;
    }
    const info = listed.result_info;
    const counts = info.status_counts || {};
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    render($("#counts"), html`<a class="chip ${f.status ? "" : "on"}" href="#" data-status="">
        all <b class="n">${total}</b></a>
      ${countChips(counts, (s) => filtersUrl(wf, { ...f, status: s, page: 1 }))}`);
    for (const chip of root.querySelectorAll("#counts a.chip")) {
      chip.classList.toggle("on", chip.dataset.status === f.status);
    }
    const rows = listed.result;
    const now = Date.now();
    render($("#instances"), rows.length ? html`<div class="table-wrap">
      <table class="grid instances"><thead><tr>
        <th>Instance</th><th>Tenant</th><th>Status</th><th class="wide">Created</th>
        <th class="wide">Started</th><th class="num">Duration</th></tr></thead><tbody>
      ${rows.map((i) => {
        const start = ms(i.started_on);
        const end = ms(i.ended_on) ?? (start === null ? null : now);
        return html`<tr data-testid="instance-row" data-id="${i.id}" data-scope="${i.scope}">
          <td><a href="${pageUrl.instance(wf, i.id, i.scope)}"><code>${i.id}</code></a></td>
          <td>${tenantCell(i.tenant, i.scope)}</td>
          <td>${badge(i.status)}</td>
          <td class="wide">${time(i.created_on)}</td><td class="wide">${time(i.started_on)}</td>
          <td class="num">${start === null ? "" : duration(end - start)}</td></tr>`;
      })}</tbody></table></div>`
      : html`<p class="empty">${f.id ? html`No instance <code>${f.id}</code>` : "No instances"}
          ${f.status || f.scope !== null ? " with these filters" : ""}.</p>`);
    const pages = info.total_pages || 1;
    render($("#pager"), html`<span class="muted">${info.total_count} instance${
        info.total_count === 1 ? "" : "s"} · page ${f.page} of ${pages} · updated
        ${clock(new Date().toISOString())}</span>
      <button type="button" data-page="${f.page - 1}" ${f.page <= 1 ? html`disabled` : ""}>
        ‹ newer</button>
      <button type="button" data-page="${f.page + 1}" ${f.page >= pages ? html`disabled` : ""}>
        older ›</button>`);
  }

  const loop = poller(tick, LIST_EVERY);
  return loop;
}
