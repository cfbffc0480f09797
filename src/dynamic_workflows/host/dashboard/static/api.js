// The admin API (host/admin.py) in Cloudflare's envelope {success, errors, messages, result},
// with dwf serve's admin token, and the dashboard's own URLs.

export const BASE = document.documentElement.dataset.base || "/cdn-cgi/local/explorer/";
const API = BASE + "api";
const TOKEN_KEY = "dwf-token";

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let asking = null; // one prompt at a time, however many requests were refused

// `#token=...` (dwf serve prints such a link): kept in the tab, taken out of the address bar.
export function takeTokenFromHash() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (!m) return;
  token = decodeURIComponent(m[1]);
  sessionStorage.setItem(TOKEN_KEY, token);
  const rest = location.hash.replace(/(?:^#|&)token=[^&]+/, "").replace(/^&/, "");
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
}

/** A refusal or failure of the admin API: its message, HTTP status and Cloudflare code. */
export class APIError extends Error {
  constructor(message, status = 0, code = 0) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function askToken() {
  asking ??= Promise.resolve().then(() => {
    const given = prompt("Admin token (dwf serve --admin-token)");
    if (given) {
      token = given.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    return Boolean(given);
  });
  try { return await asking; } finally { asking = null; }
}

/** The envelope of `method path` (`query`: an object of query parameters; `body`: JSON). */
export async function api(path, { method = "GET", query, body, retried = false } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null) url.searchParams.set(k, v);
  }
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new APIError(`cannot reach the server (${e.message})`);
  }
  if (response.status === 401 && !retried && await askToken()) {
    return api(path, { method, query, body, retried: true });
  }
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new APIError(`${method} ${path}: HTTP ${response.status}, not JSON`, response.status);
  }
  if (!envelope.success) {
    const errors = envelope.errors || [];
    const message = errors.map((e) => e.message).join("; ") || `HTTP ${response.status}`;
    throw new APIError(message, response.status, errors[0]?.code || 0);
  }
  return envelope;
}

const enc = encodeURIComponent;

/** Admin API paths. */
export const apiPath = {
  workflows: () => "/workflows",
  workflow: (wf) => `/workflows/${enc(wf)}`,
  instances: (wf) => `/workflows/${enc(wf)}/instances`,
  tenants: (wf) => `/workflows/${enc(wf)}/tenants`,
  allTenants: () => "/tenants",
  instance: (wf, id) => `/workflows/${enc(wf)}/instances/${enc(id)}`,
};

/** The dashboard's own URLs (each one a page that works on reload). */
export const pageUrl = {
  home: () => BASE,
  workflow: (wf, filters = {}) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) {
      if (v !== undefined && v !== null && v !== "" && !(k === "page" && v === 1)) q.set(k, v);
    }
    const s = q.toString();
    return `${BASE}workflows/${enc(wf)}${s ? "?" + s : ""}`;
  },
  tenants: (filters = {}) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) {
      if (v !== undefined && v !== null && v !== "" && !(k === "page" && v === 1)) q.set(k, v);
    }
    const s = q.toString();
    return `${BASE}tenants${s ? "?" + s : ""}`;
  },
  instance: (wf, id, scope) =>
    `${BASE}workflows/${enc(wf)}/instances/${enc(id)}` +
    (scope === undefined || scope === null ? "" : `?scope=${enc(scope)}`),
};

/** The id of a step's element, and so the fragment of its URL: `step-<name>-<count>`. */
export const stepAnchor = (name, count) => `step-${enc(name)}-${count}`;
