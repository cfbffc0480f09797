// One instance: its timeline of steps and attempts (retries and their delays, sleeps and waits
// with what ended them), logs and tracebacks under the attempt that wrote them, live while it
// runs (polling stops once it is finished), and the actions its status allows.

import { APIError, BASE, api, apiPath, pageUrl, stepAnchor } from "../api.js";
import {
  FINISHED, badge, clock, duration, fromNow, html, json, ms, render, shortScope, tenantCell, time,
} from "../format.js";
import { confirmAction, connection, crumbs, notify, showError } from "../ui.js";
import { Logs } from "./logs.js";

const POLL_MS = 1000;
const TYPE_LABEL = { step: "step", sleep: "sleep", waitForEvent: "wait", rollback: "rollback" };

/** The actions, when each is valid, and what to ask before the destructive ones. */
const ACTIONS = [
  { name: "pause", label: "Pause", when: (s) => ["running", "waiting", "queued"].includes(s) },
  { name: "resume", label: "Resume", when: (s) => s === "paused" },
  {
    name: "terminate", label: "Terminate", when: (s) => !FINISHED.has(s), danger: true,
    confirm: (id) => `Terminate ${id}? Its run stops for good, and it cannot be resumed.`,
  },
  {
    name: "restart", label: "Restart", when: () => true, danger: true,
    confirm: (id) => `Restart ${id}? Every recorded step result is discarded and the ` +
      "workflow runs again from the start, with the same params.",
  },
  {
    name: "delete", label: "Delete", when: () => true, danger: true,
    confirm: (id) => `Delete ${id} and its whole history? This cannot be undone.`,
  },
];

const stepKey = (s) => `${s.name}\u0000${s.count}`;

/** What a rollback outcome (Cloudflare's rollback handlers) means, in a sentence. */
const ROLLBACK_TEXT = {
  running: "the handlers of the steps it started are running, newest first.",
  complete: "the handlers of the steps it started ran, newest first, each once.",
  failed: "a handler failed after its retries, or a terminate stopped the phase; the handlers of earlier steps did not run.",
};

/** The instance's error or an attempt's, with its traceback when the server has one. */
function errorBlock(error, cls = "") {
  if (!error) return "";
  const tb = typeof error.traceback === "string" ? error.traceback
    : Array.isArray(error.traceback) ? error.traceback.join("") : null;
  return html`<div class="error ${cls}" data-testid="error">
    <span class="error-name">${error.name}</span>: <span class="error-message">${error.message}</span>
    ${tb ? html`<pre class="traceback" data-testid="traceback">${tb}</pre>` : ""}</div>`;
}

/** Bars of a step on the instance's time axis [t0, t1]. */
function bars(step, t0, t1, now) {
  const span = Math.max(1, t1 - t0);
  const seg = (from, to, cls, title) => {
    if (from === null) return "";
    const a = Math.min(Math.max(from, t0), t1);
    const b = Math.min(Math.max(to ?? now, a), t1);
    const left = ((a - t0) / span) * 100;
    const width = Math.max(((b - a) / span) * 100, 0.4);
    return html`<span class="seg ${cls}" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%"
      title="${title}"></span>`;
  };
  const out = [];
  const start = ms(step.start);
  const end = ms(step.end);
  if (step.type === "rollback" && !(step.attempts || []).length) {
    // A rollback handler's run (its step's count negated): attempts like a step's, but the
    // instance details may list none of them; its span is then its latest attempt's.
    out.push(seg(start, end ?? now, step.state === "failed" ? "failed" : "ok",
      `rollback handler: ${step.state}`));
  } else if (step.type === "step" || step.type === "rollback") {
    for (const a of step.attempts || []) {
      const as = ms(a.start);
      const ae = ms(a.end);
      out.push(seg(as, ae, a.success ? "ok" : "failed",
        `attempt ${a.attempt}: ${a.success ? "succeeded" : "failed"} ${duration(ae - as)}`));
      if (a.retry_delay_ms !== null && a.retry_delay_ms !== undefined && ae !== null) {
        out.push(seg(ae, ae + a.retry_delay_ms, "delay", `retry delay ${duration(a.retry_delay_ms)}`));
      }
    }
    const wake = ms(step.wake_at);
    if (step.state === "retrying" && wake !== null && wake <= now) {
      out.push(seg(wake, now, "running", "the next attempt is running"));
    }
  } else if (step.type === "sleep") {
    out.push(seg(start, end ?? Math.min(ms(step.wake_at) ?? now, now), "sleep", "sleep"));
  } else {
    out.push(seg(start, end ?? now, step.state === "failed" ? "timeout" : "wait",
      `waiting for event ${step.event_type}`));
  }
  return out;
}

/** What a sleep or a wait is doing, or what ended it. */
function sleepOrWait(step, live) {
  if (step.type === "sleep") {
    if (step.state === "done") {
      return html`<span class="ended-by" data-ended-by="timer">ended by its timer at
        ${time(step.wake_at)}</span>`;
    }
    return live
      ? html`<span class="pending">sleeping until ${time(step.wake_at)} (${fromNow(step.wake_at)})</span>`
      : html`<span class="muted">did not end (the instance stopped)</span>`;
  }
  const type = html`<code class="event-type">${step.event_type}</code>`;
  if (step.state === "done") {
    const received = step.output?.type ?? step.event_type;
    return html`<span class="ended-by" data-ended-by="event">ended by event
      <code class="event-type">${received}</code> at ${time(step.end)}</span>`;
  }
  if (step.state === "failed") {
    return html`<span class="ended-by" data-ended-by="timeout">ended by its timeout at
      ${time(step.end ?? step.wake_at)}, waiting for event ${type}</span>`;
  }
  return live
    ? html`<span class="pending">waiting for event ${type}${step.wake_at
      ? html` · times out at ${time(step.wake_at)} (${fromNow(step.wake_at)})` : ""}</span>`
    : html`<span class="muted">waited for event ${type}; did not end (the instance stopped)</span>`;
}

function attemptList(step, logs, live, now) {
  const attempts = step.attempts || [];
  const items = [];
  attempts.forEach((a, i) => {
    if (i > 0 && a.attempt - attempts[i - 1].attempt > 1) {
      items.push(html`<li class="omitted muted">… ${a.attempt - attempts[i - 1].attempt - 1}
        attempts not kept …</li>`);
    }
    const as = ms(a.start);
    const ae = ms(a.end);
    const lines = logs.forAttempt(step, a);
    // The step's error is its latest attempt's, with the traceback the history may not keep.
    const latest = i === attempts.length - 1 && step.error && a.error && !a.error.traceback &&
      step.error.name === a.error.name && step.error.message === a.error.message;
    const error = latest ? step.error : a.error;
    items.push(html`<li class="attempt ${a.success ? "ok" : "failed"}" data-testid="attempt"
        data-attempt="${a.attempt}">
      <div class="attempt-head">
        <span class="attempt-n">attempt ${a.attempt}</span>
        <span class="muted">${time(a.start)}</span>
        <span class="dur">${as !== null && ae !== null ? duration(ae - as) : ""}</span>
        <span class="outcome">${a.success ? "succeeded" : "failed"}</span>
        ${a.retry_delay_ms !== null && a.retry_delay_ms !== undefined
          ? html`<span class="retry-delay" data-testid="retry-delay">then waited
            ${duration(a.retry_delay_ms)} before retrying</span>` : ""}
      </div>
      ${errorBlock(error)}
      ${logs.block(lines)}
    </li>`);
  });
  if (step.state === "retrying") {
    const wake = ms(step.wake_at);
    const next = (attempts.at(-1)?.attempt ?? step.attempt) + 1;
    items.push(html`<li class="attempt next pending">attempt ${next}
      ${!live ? html`<span class="muted">never ran (the instance stopped)</span>`
        : wake !== null && wake > now ? html`due at ${time(step.wake_at)} (${fromNow(step.wake_at)})`
        : html`running…`}
      ${logs.block(logs.forAttempt(step, { attempt: next }))}</li>`);
  }
  return items.length ? html`<ol class="attempts">${items}</ol>` : "";
}

function stepMarkup(step, ctx) {
  const start = ms(step.start);
  const end = ms(step.end);
  const running = end === null && start !== null && ctx.live && step.state !== "done";
  const dur = start === null ? null : (end ?? (running ? ctx.now : null)) - start;
  const attempts = step.attempts_total || (step.attempts || []).length;
  const anchor = stepAnchor(step.name, step.count);
  const body = step.type === "step"
    ? html`${attemptList(step, ctx.logs, ctx.live, ctx.now)}
      ${step.state === "done" && step.sensitive ? html`<div class="output redacted"
        data-testid="redacted-output"><span class="muted">output</span> <code>${step.output}</code>
        <span class="muted">(sensitive: the step's config hides its output)</span></div>`
        : step.state === "done" ? html`<details class="output" data-key="output">
        <summary>output</summary>${json(step.output)}</details>` : ""}
      ${step.state === "failed" && !(step.attempts || []).length ? errorBlock(step.error) : ""}`
    : step.type === "rollback"
    ? html`${attemptList(step, ctx.logs, ctx.live, ctx.now)}
      ${step.state === "failed" && !(step.attempts || []).length ? errorBlock(step.error) : ""}
      ${(step.attempts || []).length ? "" : ctx.logs.block(ctx.logs.forStep(step))}`
    : html`<div class="step-note">${sleepOrWait(step, ctx.live)}</div>
      ${step.type === "waitForEvent" && step.state === "done"
        ? html`<details class="output" data-key="event"><summary>event payload</summary>
          ${json(step.output?.payload ?? step.output)}</details>` : ""}
      ${step.type === "waitForEvent" && step.state === "failed" ? errorBlock(step.error) : ""}
      ${ctx.logs.block(ctx.logs.forStep(step))}`;
  return html`
    <div class="step-row">
      <a class="anchor" href="${"#" + anchor}" title="link to this step">#</a>
      <span class="kind kind-${step.type}">${TYPE_LABEL[step.type] ?? step.type}</span>
      <span class="step-name">${step.name}${step.count > 1
        ? html` <span class="muted">#${step.count}</span>` : ""}</span>
      ${badge(step.state)}
      <span class="offset muted" title="since the instance started">${start === null ? ""
        : "+" + duration(start - ctx.t0)}</span>
      <span class="dur" data-testid="step-duration">${dur === null ? "" : duration(dur)}</span>
      <span class="muted">${step.type !== "sleep" && step.type !== "waitForEvent" && attempts > 1
        ? `${attempts} attempts` : ""}</span>
      <span class="track">${bars(step, ctx.t0, ctx.t1, ctx.now)}</span>
    </div>
    <div class="step-body">${body}</div>`;
}

export function instanceView(root, wf, id, initialScope) {
  let scope = initialScope;
  let details = null;
  let stopped = false;
  let timer = null;
  let inflight = null;
  let eventTypeTouched = false;
  const logs = new Logs(() => apiPath.instance(wf, id), () => scope);

  crumbs([["workflows", BASE], [wf, pageUrl.workflow(wf)], [id, ""]]);
  render(root, html`
    <div class="title">
      <h1><code data-testid="instance-id">${id}</code></h1>
      <span id="i-status" data-testid="instance-status"></span>
      <span id="live" class="live" data-testid="live"></span>
    </div>
    <dl class="facts" id="facts"></dl>
    <div class="actions" id="actions">
      ${ACTIONS.map((a) => html`<button type="button" data-action="${a.name}"
        class="${a.danger ? "danger" : ""}" hidden>${a.label}</button>`)}
      <form class="event-form" id="event-form" autocomplete="off" hidden>
        <input id="ev-type" name="type" placeholder="event type" size="16" spellcheck="false"
               aria-label="event type" required>
        <textarea id="ev-payload" name="payload" rows="1" cols="28" spellcheck="false"
                  placeholder="payload (JSON)" title='the payload, as JSON: {"by": "ada"}'
                  aria-label="payload"></textarea>
        <button type="submit" data-action="event">Send event</button>
      </form>
    </div>
    <div id="pending"></div>
    <section class="panel">
      <div class="timeline-head"><h2>Timeline</h2><span class="muted" id="axis"></span></div>
      <ol class="timeline" id="timeline" data-testid="timeline"></ol>
    </section>
    <div id="outcome"></div>
    <section class="panel" id="run-logs-panel" hidden>
      <h2>Logs outside steps</h2><div id="run-logs"></div>
    </section>
    <details class="panel params" data-key="params"><summary>params</summary>
      <div id="params"></div></details>`);
  const $ = (sel) => root.querySelector(sel);

  // -- refreshing ----------------------------------------------------------------------------

  async function load() {
    let got;
    try {
      got = await api(apiPath.instance(wf, id), { query: { scope: scope ?? undefined } });
    } catch (e) {
      if (e instanceof APIError && (e.status === 404 || e.status === 400)) {
        if (!stopped) gone(e);
        return;
      }
      throw e;
    }
    if (stopped) return;
    details = got.result;
    if (scope === null) {
      // The id was unique: make the address name its scope, so it stays this instance's.
      scope = details.scope;
      history.replaceState(null, "", pageUrl.instance(wf, id, scope) + location.hash);
    }
    await logs.load(details);
    if (stopped) return;
    update();
    connection(null);
  }

  function gone(error) {
    stopped = true;
    details = null;
    render($("#i-status"), error.status === 404 ? badge("unknown", "not found") : "");
    render($("#live"), "");
    render($("#timeline"), html`<li class="empty">${error.message}</li>`);
    for (const b of root.querySelectorAll("#actions [data-action]")) b.hidden = true;
    $("#event-form").hidden = true;
  }

  async function tick(forced = true) {
    clearTimeout(timer);
    if (inflight) await inflight;
    if (stopped) return;
    if (document.hidden && !forced) { // a tab out of sight does not poll
      timer = setTimeout(() => tick(false), POLL_MS);
      return;
    }
    inflight = load().catch((e) => { if (!stopped) connection(e); });
    await inflight;
    inflight = null;
    if (stopped) return;
    if (details && FINISHED.has(details.status)) return; // finished: nothing more will change
    timer = setTimeout(() => tick(false), POLL_MS);
  }

  // -- rendering -----------------------------------------------------------------------------

  function update() {
    const d = details;
    const live = !FINISHED.has(d.status);
    const now = Date.now();
    render($("#i-status"), badge(d.status));
    render($("#live"), live
      ? html`<span class="dot"></span> live · updated ${clock(new Date(now).toISOString())}`
      : html`finished · updates stopped`);
    $("#live").classList.toggle("on", live);
    const started = ms(d.start);
    const ended = ms(d.end);
    const fact = (label, value, testid = "") =>
      html`<div><dt>${label}</dt><dd data-testid="${testid}">${value}</dd></div>`;
    render($("#facts"), [
      fact("Tenant", tenantCell(d.tenant, d.scope), "tenant"),
      fact("Scope", shortScope(d.scope)),
      fact("Created", time(d.queued || d.created_on)),
      fact("Started", time(d.start) || html`<span class="muted">not yet</span>`),
      fact("Ended", time(d.end) || html`<span class="muted">—</span>`),
      fact("Duration", started === null ? "" : duration((ended ?? now) - started), "duration"),
      d.wake_at && live ? fact("Next wake-up", html`${time(d.wake_at)} (${fromNow(d.wake_at)})`)
        : "",
    ]);
    for (const a of ACTIONS) {
      root.querySelector(`#actions [data-action="${a.name}"]`).hidden = !a.when(d.status);
    }
    $("#event-form").hidden = !live;

    const waiting = d.steps.filter((s) => s.type === "waitForEvent" && s.state === "waiting");
    render($("#pending"), live && waiting.length ? html`<p class="waiting-note">Waiting for
      ${waiting.map((s, i) => html`${i ? ", " : ""}event
        <code class="event-type">${s.event_type}</code>
        (<a href="${"#" + stepAnchor(s.name, s.count)}">${s.name}</a>)`)}.</p>` : "");
    if (waiting.length && !eventTypeTouched && !$("#ev-type").value) {
      $("#ev-type").value = waiting[0].event_type;
    }

    // The time axis: from the start of the run to its end (or now, while it goes on).
    const t0 = started ?? ms(d.queued) ?? now;
    const t1 = Math.max(ended ?? now, t0 + 1);
    render($("#axis"), html`${time(d.start || d.queued)} → ${ended ? time(d.end) : "now"} ·
      ${duration(t1 - t0)}`);
    const ctx = { t0, t1, now, live, logs };
    renderTimeline(d, ctx);

    render($("#outcome"), html`
      ${d.error ? html`<section class="panel outcome errored"><h2>Error</h2>
        ${errorBlock(d.error, "instance-error")}</section>` : ""}
      ${d.status === "complete" ? html`<section class="panel outcome"><h2>Output</h2>
        ${json(d.output)}</section>` : ""}
      ${d.rollback ? html`<section class="panel outcome rollback ${d.rollback.outcome === "failed"
        ? "errored" : ""}" data-testid="rollback"><h2>Rollback</h2>
        <p>Rollback <strong data-testid="rollback-outcome">${d.rollback.outcome}</strong>: ${
          ROLLBACK_TEXT[d.rollback.outcome] || ""}</p>
        ${errorBlock(d.rollback.error)}</section>` : ""}`);
    const runLines = logs.outsideSteps();
    $("#run-logs-panel").hidden = !runLines.length;
    if (runLines.length) render($("#run-logs"), logs.block(runLines));
    const params = JSON.stringify(d.params, null, 2);
    if ($("#params").dataset.text !== params) {
      $("#params").dataset.text = params;
      render($("#params"), json(d.params));
    }
  }

  function renderTimeline(d, ctx) {
    const list = $("#timeline");
    const keep = new Set();
    let previous = null;
    for (const step of d.steps) {
      const key = stepKey(step);
      keep.add(key);
      let li = [...list.children].find((el) => el.dataset.key === key);
      if (!li) {
        li = document.createElement("li");
        li.dataset.key = key;
        li.dataset.testid = "step";
      }
      const markup = String(stepMarkup(step, ctx));
      if (li.dataset.markup !== markup) {
        // Re-rendered only when it changed; what the reader opened stays open.
        const open = new Set([...li.querySelectorAll("details[open]")].map((x) => x.dataset.key));
        li.innerHTML = markup;
        for (const x of li.querySelectorAll("details[data-key]")) {
          if (open.has(x.dataset.key)) x.open = true;
        }
        li.dataset.markup = markup;
      }
      li.id = stepAnchor(step.name, step.count);
      li.className = `step kind-${step.type} state-${step.state}`;
      li.dataset.name = step.name;
      li.dataset.count = step.count;
      li.dataset.state = step.state;
      const want = previous ? previous.nextElementSibling : list.firstElementChild;
      if (want !== li) list.insertBefore(li, want);
      previous = li;
    }
    for (const el of [...list.children]) {
      if (!keep.has(el.dataset.key)) el.remove();
    }
    // A step appears once its first attempt ends. Its lines come with the attempt's end too
    // (they ride in the result's frame), so a step with lines but no journal entry is rare (a
    // worker that died mid-attempt): it is shown here, as what the run was doing.
    let busy = list.querySelector("li.busy");
    const running = d.status === "running" || d.status === "queued" || !d.steps.length;
    if (running) {
      if (!busy) {
        busy = document.createElement("li");
        busy.className = "busy";
      }
      list.append(busy); // always last
      const inFlight = d.status === "running" ? ctx.logs.unrecorded(d.steps) : [];
      const markup = String(d.status === "queued"
        ? html`<span class="muted">queued: the run starts as soon as the engine takes it</span>`
        : d.status !== "running" ? html`<span class="muted">no steps</span>`
        : inFlight.length ? inFlight.map((s) => html`<div class="step-row">
            <span></span><span class="kind">step</span><span class="step-name">${s.name}${
              s.count > 1 ? html` <span class="muted">#${s.count}</span>` : ""}</span>
            ${badge("running")}<span class="muted">attempt ${s.attempt ?? 1}</span></div>
            <div class="step-body">${ctx.logs.block(s.lines)}</div>`)
        : html`<span class="muted">running… (a step appears here once its first attempt
            ends)</span>`);
      if (busy.dataset.markup !== markup) {
        busy.innerHTML = markup;
        busy.dataset.markup = markup;
      }
    } else if (busy) {
      busy.remove();
    }
    highlight();
  }

  let scrolled = false;
  function highlight() {
    const target = location.hash.length > 1 ? location.hash.slice(1) : null;
    for (const el of $("#timeline").querySelectorAll("li.step")) {
      el.classList.toggle("targeted", el.id === target);
    }
    const el = target && document.getElementById(target);
    if (el && !scrolled) {
      scrolled = true;
      el.scrollIntoView({ block: "center" });
    }
  }

  // -- actions -------------------------------------------------------------------------------

  async function act(name) {
    const spec = ACTIONS.find((a) => a.name === name);
    if (spec.confirm && !(await confirmAction(spec.confirm(id), spec.label))) return;
    const buttons = root.querySelectorAll("#actions button");
    for (const b of buttons) b.disabled = true;
    try {
      const q = { query: { scope: scope ?? undefined } };
      if (name === "delete") {
        await api(apiPath.instance(wf, id), { method: "DELETE", ...q });
        notify(`deleted ${id}`);
        window.dispatchEvent(new CustomEvent("dwf:navigate", { detail: { url: pageUrl.workflow(wf) } }));
        return;
      }
      const res = await api(apiPath.instance(wf, id) + "/status",
        { method: "PATCH", body: { status: name }, ...q });
      notify(`${name}: ${id} is ${res.result?.status ?? "changed"}`);
    } catch (e) {
      showError(`${spec.label} ${id}`, e.message);
    } finally {
      for (const b of buttons) b.disabled = false;
    }
    if (!stopped) tick();
  }

  async function sendEvent() {
    const type = $("#ev-type").value.trim();
    const rawPayload = $("#ev-payload").value.trim();
    let payload;
    try {
      payload = rawPayload ? JSON.parse(rawPayload) : undefined;
    } catch (e) {
      showError(`Send event ${type || "(no type)"} to ${id}`, `the payload is not JSON: ${e.message}`);
      return;
    }
    const button = $("#event-form button");
    button.disabled = true;
    try {
      await api(`${apiPath.instance(wf, id)}/events/${encodeURIComponent(type)}`,
        { method: "POST", body: payload, query: { scope: scope ?? undefined } });
      notify(`sent event ${type} to ${id}`);
      $("#ev-payload").value = "";
    } catch (e) {
      showError(`Send event ${type} to ${id}`, e.message);
    } finally {
      button.disabled = false;
    }
    if (!stopped) tick();
  }

  $("#actions").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (b && b.dataset.action !== "event") act(b.dataset.action);
  });
  $("#event-form").addEventListener("submit", (ev) => { ev.preventDefault(); sendEvent(); });
  $("#ev-type").addEventListener("input", () => { eventTypeTouched = true; });

  const visible = () => {
    if (!document.hidden && !stopped && !(details && FINISHED.has(details.status))) tick();
  };
  document.addEventListener("visibilitychange", visible);
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", visible);
    },
    hashChanged() { scrolled = false; highlight(); },
  };
}
