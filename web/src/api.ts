// The HTTP API at this page's own origin (/v1). The access token lives in memory only; the
// refresh token is an HttpOnly cookie the page never sees (docs/web.md). A 401 tries one
// refresh, then asks to log in again.
import { words } from "./words";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

type Listener = () => void;

let accessToken: string | null = null;
let refreshing: Promise<boolean> | null = null;
const sessionListeners = new Set<Listener>();

export function token(): string | null {
  return accessToken;
}

export function signedIn(): boolean {
  return accessToken !== null;
}

/** The role the access token names (``admin`` or ``user``): only what the page shows depends
 * on it; every admin route checks the role itself, on the server. */
export function role(): string | null {
  const payload = accessToken?.split(".")[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json) as { role?: unknown };
    return typeof claims.role === "string" ? claims.role : null;
  } catch {
    return null;
  }
}

export function isAdmin(): boolean {
  return role() === "admin";
}

export function onSessionChange(fn: Listener): void {
  sessionListeners.add(fn);
}

function setToken(value: string | null): void {
  const changed = (value === null) !== (accessToken === null);
  accessToken = value;
  if (changed) sessionListeners.forEach((fn) => fn());
}

interface TokenAnswer {
  access_token: string;
  expires_in: number;
}

let renewTimer: number | undefined;

function accept(answer: TokenAnswer): void {
  setToken(answer.access_token);
  window.clearTimeout(renewTimer);
  // Renew a minute before it expires, so the live feed's private channels never lapse.
  const inMs = Math.max(10, answer.expires_in - 60) * 1000;
  renewTimer = window.setTimeout(() => void refresh(), inMs);
}

async function send(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const h: Record<string, string> = { Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (accessToken && !path.startsWith("/v1/auth/refresh") && !path.startsWith("/v1/auth/logout")) {
    h.Authorization = `Bearer ${accessToken}`;
  }
  try {
    return await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", words("network"));
  }
}

async function errorOf(resp: Response): Promise<ApiError> {
  let code = `http_${resp.status}`;
  let message = resp.statusText || "error";
  try {
    const body = (await resp.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // not the API's JSON (a proxy's page): keep the status
  }
  const retry = Number(resp.headers.get("Retry-After") ?? "");
  if (resp.status === 429) {
    message = `Too many requests: try again in ${Number.isFinite(retry) && retry > 0 ? retry : "a few"} seconds.`;
  } else if (resp.status >= 500 && resp.status !== 503) {
    message = `The exchange had a problem (${resp.status}). Try again.`;
  }
  return new ApiError(resp.status, code, message, Number.isFinite(retry) ? retry : undefined);
}

/** 401s that are about a proof asked for, not about the session. */
const NOT_THE_SESSION = new Set(["fresh_auth_required", "totp_required", "invalid_totp_code", "invalid_credentials"]);

export async function api<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
  const auth = path.startsWith("/v1/auth/");
  let resp = await send(method, path, body, headers);
  if (resp.status === 401 && !auth) {
    let err = await errorOf(resp);
    if (NOT_THE_SESSION.has(err.code)) throw err;
    // The access token expired or ended: one refresh, then the request again.
    if (accessToken !== null && (await refresh())) {
      resp = await send(method, path, body, headers);
      if (resp.status !== 401) return answer<T>(resp);
      err = await errorOf(resp);
      if (NOT_THE_SESSION.has(err.code)) throw err;
    }
    setToken(null);
    window.dispatchEvent(new CustomEvent("session-expired"));
    throw err;
  }
  return answer<T>(resp);
}

async function answer<T>(resp: Response): Promise<T> {
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return undefined as T;
  return (await resp.json()) as T;
}

/** A new access token from the refresh cookie; false when the session is over. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    try {
      const resp = await send("POST", "/v1/auth/refresh", {});
      if (!resp.ok) {
        setToken(null);
        return false;
      }
      accept((await resp.json()) as TokenAnswer);
      return true;
    } catch {
      return false; // offline: keep what we have, the next call tells
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export interface LoginResult {
  /** The account has a second factor (TOTP) and no code was given: ask for it and log in
   * again with ``code``. */
  secondFactor?: boolean;
}

/** Whether the API asks for the second factor (401 totp_required). */
export function needsCode(e: unknown): boolean {
  return e instanceof ApiError && e.code === "totp_required";
}

export async function login(email: string, password: string, code?: string): Promise<LoginResult> {
  const body: Record<string, unknown> = { email, password, refresh_cookie: true };
  // The second factor: sent only once the login asked for it (401 totp_required).
  if (code) body.totp_code = code;
  try {
    accept(await api<TokenAnswer>("POST", "/v1/auth/login", body));
  } catch (e) {
    if (needsCode(e) && !code) return { secondFactor: true };
    throw e;
  }
  return {};
}

export async function signup(email: string, password: string): Promise<void> {
  await api("POST", "/v1/auth/signup", { email, password });
}

export async function logout(): Promise<void> {
  try {
    await send("POST", "/v1/auth/logout", {});
  } finally {
    window.clearTimeout(renewTimer);
    setToken(null);
  }
}

/** A fresh proof (the password again) for withdrawals and API keys that trade or withdraw. */
export async function reauth(password: string, code?: string): Promise<void> {
  const body: Record<string, unknown> = { password };
  if (code) body.totp_code = code;
  const answer = await api<TokenAnswer>("POST", "/v1/auth/reauth", body);
  accept(answer);
}

export function idempotencyKey(): Record<string, string> {
  return { "Idempotency-Key": crypto.randomUUID() };
}
