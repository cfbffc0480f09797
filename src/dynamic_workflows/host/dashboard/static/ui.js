// What outlives a page and its refreshes: errors that stay until dismissed, short notices, the
// connection state and the confirmation dialog.

import { html, render } from "./format.js";

const $ = (id) => document.getElementById(id);
let alertCount = 0;

/**
 * An error that stays on screen until its × is clicked: a refused action must not vanish with
 * the next refresh. `what` names what was attempted ("terminate order-1").
 */
export function showError(what, message) {
  const id = `alert-${++alertCount}`;
  $("alerts").insertAdjacentHTML("beforeend", String(html`
    <div class="alert" role="alert" id="${id}" data-testid="action-error">
      <span class="alert-what">${what}</span>
      <span class="alert-message">${message}</span>
      <button type="button" class="dismiss" aria-label="dismiss" title="dismiss">×</button>
    </div>`));
  return id;
}

/** A short confirmation of what worked; goes away by itself. */
export function notify(message) {
  const el = document.createElement("div");
  el.className = "notice";
  el.textContent = message;
  $("notices").append(el);
  setTimeout(() => el.remove(), 4000);
}

/** Whether the last refresh reached the server (a failing refresh is not an action's error:
 * it is shown here and cleared by the next refresh that works). */
export function connection(error) {
  const el = $("conn");
  if (!error) { el.hidden = true; el.textContent = ""; return; }
  el.hidden = false;
  el.textContent = `refresh failed: ${error.message} · retrying`;
}

/** The breadcrumbs: a list of [label, href] (the last one is the current page). */
export function crumbs(items) {
  render($("crumbs"), items.map(([label, href], i) => (i === items.length - 1
    ? html`<span class="crumb current">${label}</span>`
    : html`<a class="crumb" href="${href}">${label}</a>`)));
}

/** Ask before a destructive action; resolves true when confirmed. */
export function confirmAction(text, okLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").onclick = $("confirm-cancel").onclick = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    dialog.oncancel = (ev) => { ev.preventDefault(); done(false); };
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

document.addEventListener("click", (ev) => {
  const button = ev.target.closest(".alert .dismiss");
  if (button) button.closest(".alert").remove();
});
