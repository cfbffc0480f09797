// What an instance's runs printed or logged, read from the admin API's
// `GET .../instances/:id/logs?after=<cursor>` (host/logs_api.py):
//   {lines: [{seq, time, stream, message, step: {name, count} | null, attempt, dropped}],
//    cursor, more, status, bytes, dropped_lines}
// Each line goes under the step attempt that wrote it; `run()`'s own lines (no step) go to
// "logs outside steps". A server without the route shows no logs and is not asked again.

import { APIError, api } from "../api.js";
import { html, time } from "../format.js";

const NO_ROUTE = 7003;
const MAX_PAGES = 10; // per refresh: a long backlog is read over the next refreshes
const KEPT = 5000; // lines kept in the page: the oldest go first
const SLACK_MS = 1000; // a line's time and its attempt's, taken on either side of the sandbox

const stepKey = (name, count) => `${name}\u0000${count}`;

export class Logs {
  /** `path()`: the instance's admin API path; `scope()`: its scope. */
  constructor(path, scope) {
    this.path = path;
    this.scope = scope;
    this.supported = null;
    this.cursor = "0";
    this.lines = [];
    this.droppedLines = 0;
    this.bytes = 0;
    this.trimmed = 0;
  }

  /** Read the lines written since the last call (and start over after a restart, which
   * leaves no line of the runs before it). */
  async load() {
    if (this.supported === false) return;
    for (let page = 0; page < MAX_PAGES; page++) {
      let r;
      try {
        r = (await api(this.path() + "/logs", {
          query: { scope: this.scope() ?? undefined, after: this.cursor },
        })).result;
      } catch (e) {
        if (e instanceof APIError && e.status === 404 && e.code === NO_ROUTE) {
          this.supported = false;
        }
        return; // the instance's other details are still worth showing
      }
      this.supported = true;
      if (Number(r.cursor) < Number(this.cursor)) { // its lines were deleted (a restart)
        this.lines = [];
        this.trimmed = 0;
      }
      this.lines.push(...r.lines);
      if (this.lines.length > KEPT) {
        this.trimmed += this.lines.length - KEPT;
        this.lines.splice(0, this.lines.length - KEPT);
      }
      this.cursor = r.cursor ?? this.cursor;
      this.droppedLines = r.dropped_lines || 0;
      this.bytes = r.bytes || 0;
      if (!r.more) return;
    }
  }

  /** The lines of `attempt` (an attempt of `step`): those it wrote while it ran (a restarted
   * instance keeps the lines of its earlier runs, whose attempts had the same numbers). */
  forAttempt(step, attempt) {
    const from = attempt.start ? Date.parse(attempt.start) - SLACK_MS : -Infinity;
    const to = attempt.end ? Date.parse(attempt.end) + SLACK_MS : Infinity;
    return this.lines.filter((e) => {
      if (!e.step || e.step.name !== step.name || e.step.count !== step.count ||
          (e.attempt ?? 1) !== attempt.attempt) return false;
      const at = Date.parse(e.time);
      return Number.isNaN(at) || (at >= from && at <= to);
    });
  }

  /** The lines of a step (a sleep's or a wait's). */
  forStep(step) {
    return this.lines.filter((e) => e.step && e.step.name === step.name &&
      e.step.count === step.count);
  }

  /** The lines of `run()`'s own code, between steps. */
  outsideSteps() {
    return this.lines.filter((e) => !e.step);
  }

  /** The lines of steps the journal does not show yet (a first attempt still running), by
   * step: [{name, count, attempt, lines}]. */
  unrecorded(steps) {
    const known = new Set(steps.map((s) => stepKey(s.name, s.count)));
    const found = new Map();
    for (const e of this.lines) {
      if (!e.step || known.has(stepKey(e.step.name, e.step.count))) continue;
      const key = stepKey(e.step.name, e.step.count);
      if (!found.has(key)) found.set(key, { ...e.step, attempt: e.attempt, lines: [] });
      const entry = found.get(key);
      entry.attempt = e.attempt ?? entry.attempt;
      entry.lines.push(e);
    }
    return [...found.values()];
  }

  /** Lines as markup (nothing for none). */
  block(lines) {
    if (!lines.length) return "";
    return html`<div class="logs" data-testid="logs">${lines.map((e) => html`<div
      class="log-line stream-${e.stream}"><span class="log-time">${time(e.time)}</span><span
      class="log-stream">${e.stream}</span><span class="log-text">${e.message ||
      (e.dropped ? `${e.dropped} line${e.dropped === 1 ? "" : "s"} dropped (over the log limit)`
        : "")}</span></div>`)}</div>`;
  }
}
