/**
 * Where the pages' token travels, and who it says you are. Pure.
 *
 * Two forms, both of which the stream accepts (a browser's EventSource or a page navigation
 * cannot set an Authorization header):
 * - cookie: the dashboard's sign-in POSTs the token once (`/auth/session`) and the server keeps
 *   it in an HttpOnly cookie that every same-origin request then carries; scripts never see it.
 * - query: a page opened with `?access_token=...` passes it on in the stream's and the links'
 *   URLs, and in an Authorization header on its API calls. Handy for a link, but the token
 *   sits in the address bar and the history; the server sends no Referer for these pages.
 * With auth off neither is needed and both are ignored.
 */

export const QUERY_TOKEN = "access_token";

/** The token a page was opened with (`?access_token=`), or null (the cookie form or none). */
export function tokenFromSearch(search: string): string | null {
  const token = new URLSearchParams(search).get(QUERY_TOKEN);
  return token ? token : null;
}

/** ``url`` with the token added to its query (the query form); unchanged without a token. */
export function withToken(url: string, token: string | null): string {
  if (!token) return url;
  const sep = url.includes("?") ? "&" : "?";
  return `${url}${sep}${QUERY_TOKEN}=${encodeURIComponent(token)}`;
}

/** An Authorization header for API calls in the query form; none in the cookie form. */
export function authHeaders(token: string | null): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** `GET /auth/session`'s answer. */
export interface WhoAmI {
  auth: boolean;
  subject?: string | null;
  admin?: boolean;
  expires_at_ms?: number;
}

export type Identity =
  | { kind: "off" }
  | { kind: "signed-in"; subject: string; admin: boolean; expiresAtMs: number; via: "cookie" | "query" }
  | { kind: "signed-out"; reason: string };

/** What `/auth/session` answered, as an identity: 200 with auth on or off, else signed out. */
export function identity(status: number, body: WhoAmI | { error?: string } | null, token: string | null): Identity {
  if (status === 200 && body && "auth" in body) {
    if (!body.auth) return { kind: "off" };
    return {
      kind: "signed-in",
      subject: body.subject ?? "",
      admin: body.admin ?? false,
      expiresAtMs: body.expires_at_ms ?? 0,
      via: token ? "query" : "cookie",
    };
  }
  const error = body && "error" in body && body.error ? body.error : `HTTP ${status}`;
  return { kind: "signed-out", reason: error };
}

const clock = (ms: number): string =>
  new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });

/** The identity in plain words, for the dashboard's "who you are" line. */
export function describeIdentity(who: Identity): string {
  switch (who.kind) {
    case "off":
      return "Auth is off here: no token is needed to stream or read.";
    case "signed-in": {
      const role = who.admin ? " (admin)" : "";
      const where = who.via === "cookie" ? "kept in a cookie" : "in this page's address";
      return `Signed in as ${who.subject}${role} until ${clock(who.expiresAtMs)}; the token is ${where}.`;
    }
    case "signed-out":
      return `Not signed in (${who.reason}). Paste a token from \`kubescaler token USER_ID\` below.`;
  }
}

/** Looks like a JWT: three base64url parts (two of them non-empty). The server decides. */
export const looksLikeJwt = (s: string): boolean => /^[\w-]+\.[\w-]+\.[\w-]*$/.test(s.trim());
