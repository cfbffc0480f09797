// A page's refreshing loop: it reads now, then again every so often while the tab is in sight;
// a failing read is said in the header (and cleared by the next that works), not as an error.

import { connection } from "./ui.js";

/** A refreshing loop: `tick` now, then every `every` ms until stopped. */
export function poller(tick, every) {
  let timer = null;
  let stopped = false;
  let running = null;
  let forced = true;
  const run = async () => {
    clearTimeout(timer);
    if (running) { await running; }
    running = (async () => {
      if (document.hidden && !forced) return; // a tab out of sight does not poll
      try { await tick(); connection(null); } catch (e) { if (!stopped) connection(e); }
    })();
    await running;
    running = null;
    forced = false;
    if (!stopped) timer = setTimeout(run, every);
  };
  const visible = () => { if (!document.hidden && !stopped) run(); };
  document.addEventListener("visibilitychange", visible);
  run();
  return {
    now: () => { forced = true; return run(); },
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", visible);
    },
  };
}
