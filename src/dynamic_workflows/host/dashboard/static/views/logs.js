// The tenant's printed lines of one instance, read a page at a time from the admin API's
// `GET .../instances/:id/logs?after=<cursor>`, and placed under the step attempt that wrote them
// (or in "logs outside steps"). A server without that route shows no logs, and is not asked
// again.

import { APIError, api } from "../api.js";
import { html, time } from "../format.js";

const NO_ROUTE = 7003;
const MAX_PAGES = 20; // per refresh: a long backlog is read over the next refreshes

const text = (e) => e.message ?? e.line ?? e.text ?? e.msg ?? "";
const stepName = (e) => (typeof e.step === "string" ? e.step : e.step?.name ?? e.step_name ?? null);
const stepCount = (e) => e.step?.count ?? e.step_count ?? e.count ?? 1;
const attemptOf = (e) => e.step?.attempt ?? e.attempt ?? null;
const when = (e) => e.ts ?? e.time ?? e.timestamp ?? e.at ?? null;

export class Logs {
  /** `path()`: the instance's admin API path; `scope()`: its scope. */
  constructor(path, scope) {
    this.path = path;
    this.scope = scope;
    this.supported = null;
    this.cursor = null;
    this.entries = [];
  }

  /** Read what was written since the last call. */
  async load() {
    if (this.supported === false) return;
    for (let page = 0; page < MAX_PAGES; page++) {
      let got;
      try {
        got = await api(this.path() + "/logs", {
          query: { scope: this.scope() ?? undefined, after: this.cursor ?? undefined },
        });
      } catch (e) {
        if (e instanceof APIError && e.status === 404 && e.code === NO_ROUTE) {
          this.supported = false;
        }
        return; // the instance's other details are still worth showing
      }
      this.supported = true;
      const r = got.result;
      const entries = Array.isArray(r) ? r : r?.logs ?? r?.entries ?? r?.lines ?? [];
      const info = got.result_info || {};
      const next = info.cursor ?? info.next ?? info.after ?? r?.cursor ?? r?.next ??
        entries.at(-1)?.cursor ?? null;
      this.entries.push(...entries);
      if (next === null || next === undefined || next === this.cursor || !entries.length) {
        if (next !== null && next !== undefined) this.cursor = next;
        return;
      }
      this.cursor = next;
    }
  }

  /** The lines of `attempt` (an attempt of `step`). */
  forAttempt(step, attempt) {
    return this.entries.filter((e) => stepName(e) === step.name &&
      stepCount(e) === step.count && (attemptOf(e) ?? 1) === attempt.attempt);
  }

  /** The lines of a step (a sleep's or a wait's: any attempt). */
  forStep(step) {
    return this.entries.filter((e) => stepName(e) === step.name && stepCount(e) === step.count);
  }

  /** The lines written outside every step of `steps` (by `run` itself, or by a step that is
   * not recorded yet: its first attempt still runs). */
  outsideSteps(steps) {
    const known = new Set(steps.map((s) => `${s.name}\u0000${s.count}`));
    return this.entries.filter((e) => {
      const name = stepName(e);
      return name === null || !known.has(`${name}\u0000${stepCount(e)}`);
    });
  }

  /** Lines as markup (nothing for none). */
  block(lines) {
    if (!lines.length) return "";
    return html`<div class="logs" data-testid="logs">${lines.map((e) => {
      const stream = e.stream ?? e.level ?? "";
      const at = when(e);
      const iso = typeof at === "number" ? new Date(at * 1000).toISOString() : at;
      return html`<div class="log-line ${stream}"><span class="log-time">${time(iso)}</span>
        <span class="log-text">${text(e)}</span></div>`;
    })}</div>`;
  }
}
