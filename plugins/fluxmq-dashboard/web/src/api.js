// The admin API client: every call carries the admin token kept in sessionStorage.
const KEY = "fluxmq.admin_token";

export function getToken() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the token lives until the page closes */
  }
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  get auth() {
    return this.status === 401 || this.status === 403;
  }
}

// A sentence a person can act on, for a failed call.
export function explain(err) {
  if (!(err instanceof ApiError)) return `Cannot reach the broker: ${err.message || err}`;
  if (err.status === 401)
    return getToken()
      ? `The admin token was refused (401: ${err.message}). Enter the broker's [http] admin_token.`
      : `This broker needs its admin token (401: ${err.message}).`;
  if (err.status === 403)
    return `Forbidden (403: ${err.message}). Without [http] admin_token the admin API serves this machine only.`;
  return `${err.status}: ${err.message}`;
}

export function headers(extra = {}) {
  const h = { ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

let onAuthError = () => {};
export function setAuthHandler(fn) {
  onAuthError = fn;
}

export async function call(method, path, body, opts = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(`network error: ${e.message}`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    let msg = resp.statusText || "error";
    try {
      msg = JSON.parse(text).error || msg;
    } catch {
      /* not JSON */
    }
    const err = new ApiError(resp.status, msg);
    if (err.auth) onAuthError(err);
    throw err;
  }
  if (opts.raw) return text;
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const api = (p) => `/api/v1${p}`;
export const enc = encodeURIComponent;
