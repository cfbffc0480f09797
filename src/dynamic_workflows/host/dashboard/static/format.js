// Markup and formatting. Everything a page shows goes through `html`, which escapes every value
// it is given unless that value is itself `html` (or `raw`): tenant data can hold any text.

class Markup {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);

function piece(value) {
  if (value instanceof Markup) return value.text;
  if (Array.isArray(value)) return value.map(piece).join("");
  if (value === null || value === undefined || value === false) return "";
  return esc(value);
}

/** A template literal tag: `html\`<b>${name}</b>\`` escapes `name`. */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += piece(v) + strings[i + 1]; });
  return new Markup(out);
}

/** Markup given as is (only for text this code wrote). */
export const raw = (text) => new Markup(text);

/** Replace the content of `element` with `markup`. */
export function render(element, markup) { element.innerHTML = piece(markup); }

export const FINISHED = new Set(["complete", "errored", "terminated"]);
export const STATUSES = ["queued", "running", "waiting", "waitingForPause", "paused",
                         "complete", "errored", "terminated"];

export const badge = (status, label = status) =>
  html`<span class="st st-${status}" data-status="${status}">${label}</span>`;

export const ms = (iso) => (iso ? Date.parse(iso) : null);

/** A duration in milliseconds, short: 12 ms, 1.52 s, 2 min 3 s, 1 h 2 min, 3 d 4 h. */
export function duration(millis) {
  if (millis === null || millis === undefined || Number.isNaN(millis)) return "";
  const m = Math.max(0, millis);
  if (m < 1) return "<1 ms";
  if (m < 1000) return `${Math.round(m)} ms`;
  if (m < 10000) return `${(m / 1000).toFixed(2)} s`;
  if (m < 60000) return `${(m / 1000).toFixed(1)} s`;
  const s = Math.round(m / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** A moment in local time: `14:03:07.123`, with the date when it is not today. */
export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** `in 12 s` / `3.0 s ago` from now. */
export function fromNow(iso) {
  const t = ms(iso);
  if (t === null) return "";
  const d = t - Date.now();
  return d >= 0 ? `in ${duration(d)}` : `${duration(-d)} ago`;
}

/** A <time> element showing `clock(iso)`, its full ISO form on hover. */
export const time = (iso) => (iso ? html`<time datetime="${iso}" title="${iso}">${clock(iso)}</time>` : "");

/** A JSON value, pretty-printed. */
export const json = (value) => html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;

/** A scope, shortened (the full one on hover). */
export const shortScope = (scope) =>
  scope ? html`<code class="scope" title="${scope}">${scope.slice(0, 12)}</code>` : html`<span class="muted">(none)</span>`;

/** An instance's tenant: its readable form, or a dash for an instance without one. */
export const tenantCell = (tenant, scope) =>
  tenant ? html`<span class="tenant" title="${scope ? "scope " + scope : ""}">${tenant}</span>`
    : html`<span class="muted" title="no dispatcher metadata">—</span>`;
