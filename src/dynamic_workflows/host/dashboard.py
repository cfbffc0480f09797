"""The dashboard: one HTML page (no build step) over the admin API, refreshing itself.

Served at ``/cdn-cgi/local/explorer/``. The page holds no data: it reads everything from the
admin API with ``fetch``. Behind ``dwf serve``'s token, open it as
``/cdn-cgi/local/explorer/#token=<TOKEN>`` (the fragment never leaves the browser) or paste the
token when asked; it is kept in the tab's sessionStorage.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

__all__ = ["PAGE", "dashboard"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dwf · workflows</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ee; --bg:#f7f8fb; --accent:#f38020; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
  header { padding:10px 18px; background:#fff; border-bottom:1px solid var(--line);
           display:flex; gap:12px; align-items:baseline; }
  header b { color:var(--accent); }
  header span { color:var(--muted); }
  main { display:grid; grid-template-columns: 260px 420px 1fr; gap:12px; padding:12px; }
  section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:10px;
            min-height:200px; overflow:auto; max-height: calc(100vh - 80px); }
  h2 { font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted);
       margin:0 0 8px; }
  table { border-collapse:collapse; width:100%; }
  td, th { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line);
           vertical-align:top; }
  th { color:var(--muted); font-weight:500; }
  tr.pick { cursor:pointer; } tr.pick:hover { background:#fff6ee; }
  tr.on { background:#ffe9d6; }
  code, pre { font:12px/1.35 ui-monospace, monospace; }
  pre { white-space:pre-wrap; word-break:break-all; background:var(--bg); padding:6px;
        border-radius:4px; margin:4px 0; max-height:220px; overflow:auto; }
  .st { padding:1px 6px; border-radius:9px; font-size:12px; background:#eef; white-space:nowrap; }
  .complete { background:#dcf5e3; } .errored { background:#fde0e0; }
  .terminated { background:#eee; } .waiting, .paused, .waitingForPause { background:#fff1c9; }
  .running, .queued { background:#dbeafe; }
  .muted { color:var(--muted); } button, select, input { font:inherit; }
  .row { display:flex; gap:6px; flex-wrap:wrap; margin:6px 0; }
  #err { color:#b00020; }
</style>
</head>
<body>
<header><b>dwf</b> workflows explorer <span id="where"></span> <span id="err"></span></header>
<main>
  <section><h2>Workflows</h2><table id="wfs"></table></section>
  <section><h2>Instances <span id="wfname" class="muted"></span></h2>
    <div class="row"><select id="status"><option value="">all statuses</option></select></div>
    <table id="insts"></table></section>
  <section><h2>Instance</h2><div id="detail" class="muted">Pick an instance.</div></section>
</main>
<script>
const API = location.pathname.replace(/\\/?$/, "/") + "api";
const STATUSES = ["queued","running","paused","errored","terminated","complete",
                  "waitingForPause","waiting"];
let token = sessionStorage.getItem("dwf-token") || "";
const m = location.hash.match(/token=([^&]+)/);
if (m) { token = decodeURIComponent(m[1]); sessionStorage.setItem("dwf-token", token);
         history.replaceState(null, "", location.pathname); }
let wf = null, inst = null, instScope = null;
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const badge = (s) => `<span class="st ${esc(s)}">${esc(s)}</span>`;
const json = (v) => `<pre>${esc(JSON.stringify(v, null, 2))}</pre>`;
for (const s of STATUSES) $("status").insertAdjacentHTML("beforeend",
  `<option>${s}</option>`);

async function api(path, opts = {}) {
  opts.headers = Object.assign({"content-type": "application/json"}, opts.headers || {});
  if (token) opts.headers["authorization"] = "Bearer " + token;
  const r = await fetch(API + path, opts);
  if (r.status === 401) {
    token = prompt("Admin token (dwf serve --admin-token)") || "";
    sessionStorage.setItem("dwf-token", token);
    throw new Error("unauthorized");
  }
  const body = await r.json();
  if (!body.success) throw new Error(body.errors.map((e) => e.message).join("; "));
  return body;
}

async function refresh() {
  try {
    const wfs = (await api("/workflows")).result;
    if (!wf && wfs.length) wf = wfs[0].name;
    $("wfs").innerHTML = "<tr><th>name</th><th>instances</th></tr>" + wfs.map((w) => {
      const c = Object.entries(w.instances || {}).filter(([, n]) => n > 0)
        .map(([s, n]) => `${badge(s)} ${n}`).join(" ");
      return `<tr class="pick ${w.name === wf ? "on" : ""}" data-wf="${esc(w.name)}">
        <td><b>${esc(w.name)}</b><br><span class="muted">${esc(w.class_name)}</span></td>
        <td>${c || '<span class="muted">none</span>'}</td></tr>`;
    }).join("");
    if (wf) {
      $("wfname").textContent = wf;
      const st = $("status").value;
      const q = "?per_page=100" + (st ? "&status=" + st : "");
      const list = await api(`/workflows/${encodeURIComponent(wf)}/instances${q}`);
      $("insts").innerHTML = "<tr><th>id</th><th>status</th><th>created</th></tr>" +
        list.result.map((i) => `<tr class="pick ${i.id === inst && i.scope === instScope
          ? "on" : ""}" data-id="${esc(i.id)}" data-scope="${esc(i.scope)}">
          <td><code>${esc(i.id)}</code>${i.scope ? `<br><span class="muted">scope
          ${esc(i.scope.slice(0, 12))}…</span>` : ""}</td><td>${badge(i.status)}</td>
          <td class="muted">${esc((i.created_on || "").replace("T", " ").slice(0, 19))}</td>
          </tr>`).join("") +
        `<tr><td colspan="3" class="muted">${list.result_info.total_count} in all</td></tr>`;
    }
    if (wf && inst) await showInstance();
    $("err").textContent = "";
  } catch (e) { $("err").textContent = e.message; }
}

function instPath() {
  return `/workflows/${encodeURIComponent(wf)}/instances/${encodeURIComponent(inst)}` ;
}
function scopeQuery() { return "?scope=" + encodeURIComponent(instScope ?? ""); }

async function showInstance() {
  const d = (await api(instPath() + scopeQuery())).result;
  const steps = d.steps.map((s) => `<tr><td><b>${esc(s.name)}</b>${s.count > 1
      ? ` <span class="muted">#${s.count}</span>` : ""}</td><td>${esc(s.type)}</td>
      <td>${badge(s.state)}</td><td>${s.attempt || ""}</td>
      <td>${s.error ? json(s.error) : s.output !== null ? json(s.output)
        : s.wake_at ? `<span class="muted">until ${esc(s.wake_at)}</span>` : ""}</td></tr>`)
    .join("");
  const key = wf + "/" + inst + "/" + instScope;
  if (!$("actions") || $("actions").dataset.key !== key) {
    // Rendered once per instance, so a refresh does not wipe what is being typed.
    $("detail").classList.remove("muted");
    $("detail").innerHTML = `<div class="row" id="actions">
      ${["pause","resume","terminate","restart"].map((a) =>
        `<button data-act="${a}">${a}</button>`).join("")}
      <input id="evtype" placeholder="event type" size="12">
      <input id="evpayload" placeholder='payload JSON' size="14">
      <button data-act="event">send event</button>
      <button data-act="delete">delete</button>
    </div><div id="info"></div>`;
    $("actions").dataset.key = key;
  }
  $("info").innerHTML = `<div><code>${esc(d.id)}</code> ${badge(d.status)}</div>
    <table><tr><th>step</th><th>type</th><th>state</th><th>attempt</th><th>result</th></tr>
    ${steps || '<tr><td colspan="5" class="muted">no steps yet</td></tr>'}</table>
    ${d.error ? "<h2>error</h2>" + json(d.error) : ""}
    ${d.output !== null ? "<h2>output</h2>" + json(d.output) : ""}
    <h2>params</h2>${json(d.params)}
    <div class="muted">created ${esc(d.created_on)} · scope ${esc(d.scope || "(none)")}</div>`;
}

document.addEventListener("click", async (ev) => {
  const row = ev.target.closest("tr.pick");
  if (row && row.dataset.wf) { wf = row.dataset.wf; inst = null; refresh(); return; }
  if (row && row.dataset.id) { inst = row.dataset.id; instScope = row.dataset.scope;
                               refresh(); return; }
  const act = ev.target.dataset && ev.target.dataset.act;
  if (!act) return;
  try {
    if (act === "event") {
      const type = $("evtype").value.trim(), raw = $("evpayload").value.trim();
      await api(`${instPath()}/events/${encodeURIComponent(type)}${scopeQuery()}`,
                {method: "POST", body: raw || "null"});
    } else if (act === "delete") {
      await api(instPath() + scopeQuery(), {method: "DELETE"}); inst = null;
      $("detail").innerHTML = "Pick an instance."; $("detail").classList.add("muted");
    } else {
      await api(instPath() + "/status" + scopeQuery(),
                {method: "PATCH", body: JSON.stringify({status: act})});
    }
    refresh();
  } catch (e) { $("err").textContent = e.message; }
});
$("status").addEventListener("change", refresh);
$("where").textContent = location.host;
refresh();
setInterval(refresh, 1500);
</script>
</body>
</html>
"""


async def dashboard(request: Request) -> HTMLResponse:
    """The page (static: all data comes from the admin API)."""
    return HTMLResponse(PAGE, headers={"cache-control": "no-store"})
