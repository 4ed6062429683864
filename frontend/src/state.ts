/**
 * The lock state the stream page shows, and how the client reacts to each outcome. Pure.
 */

export type LockState =
  | { kind: "connecting"; attempt: number }
  | { kind: "streaming"; instance: string; token: number; expiresAtMs: number }
  | { kind: "refused"; holderExpiresAtMs: number | null; retryInMs: number }
  | { kind: "lost"; reason: string }
  | { kind: "superseded"; token: number }
  | { kind: "reconnecting"; reason: "draining" | "disconnected" | "unavailable" | "limited"; retryInMs: number; detail?: string }
  | { kind: "failed"; status: number; message: string }
  | { kind: "stopped" };

/** Backoff after a dropped connection or a 503: 0.5 s doubling to 10 s. */
export function backoffMs(attempt: number, baseMs = 500, capMs = 10_000): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * When to try again after a 409: just after the holder's lock would lapse (it may be refreshed,
 * then the next try is refused with a later expiry), between 1 and 30 seconds from now.
 */
export function refusedRetryMs(holderExpiresAtMs: number | null, nowMs: number): number {
  if (holderExpiresAtMs === null) return 5_000;
  return Math.min(30_000, Math.max(1_000, holderExpiresAtMs - nowMs + 250));
}

export interface RefusalBody {
  error?: string;
  holder_expires_at_ms?: number;
  dependency?: string;
  /** 429: whole seconds until an open can pass, and which limit refused ("session", "address"). */
  retry_after_s?: number;
  limit?: string;
}

/** What a refused request (an HTTP status before the stream began) means for the client. */
export function onRefusal(
  status: number,
  body: RefusalBody | null,
  attempt: number,
  nowMs: number,
): LockState {
  if (status === 409) {
    const expiry = typeof body?.holder_expires_at_ms === "number" ? body.holder_expires_at_ms : null;
    return { kind: "refused", holderExpiresAtMs: expiry, retryInMs: refusedRetryMs(expiry, nowMs) };
  }
  if (status === 429) {
    const waitMs = typeof body?.retry_after_s === "number" ? body.retry_after_s * 1000 : backoffMs(attempt);
    return { kind: "reconnecting", reason: "limited", retryInMs: Math.max(1000, waitMs), detail: body?.limit ?? "client" };
  }
  if (status === 503 || status === 502 || status === 504) {
    const detail = body?.dependency ? `${body.dependency} did not answer` : `HTTP ${status}`;
    return { kind: "reconnecting", reason: "unavailable", retryInMs: backoffMs(attempt), detail };
  }
  const message = body?.error ?? `HTTP ${status}`;
  return { kind: "failed", status, message };
}

/** Retry delay for the `reconnect` event: the stream's `retry:` when it sent one. */
export function drainRetryMs(retry: number | null): number {
  return retry ?? 500;
}

const time = (ms: number): string =>
  new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

const seconds = (ms: number): string => `${Math.max(0, Math.round(ms / 100) / 10)} s`;

/** The state in plain words, for the status line (an aria-live region). */
export function describe(state: LockState): string {
  switch (state.kind) {
    case "connecting":
      return state.attempt > 1 ? `Connecting (attempt ${state.attempt})…` : "Connecting…";
    case "streaming":
      return `Streaming from ${state.instance}: this session holds the lock (fencing token ${state.token}).`;
    case "refused":
      return state.holderExpiresAtMs === null
        ? `Refused: another session holds this pair. Trying again in ${seconds(state.retryInMs)}.`
        : `Refused: another session holds this pair until ${time(state.holderExpiresAtMs)} unless it refreshes its lock. Trying again in ${seconds(state.retryInMs)}.`;
    case "lost":
      return `Lock lost (${state.reason}): the stream was stopped. Press Reconnect to try again.`;
    case "superseded":
      return `Superseded: this session opened a newer stream of this pair (fencing token ${state.token}), in another tab or window, so this one stopped; a pair streams once. Press Reconnect to take it back here.`;
    case "reconnecting":
      if (state.reason === "draining")
        return `Reconnecting after a drain: the instance is shutting down; resuming with the same session in ${seconds(state.retryInMs)}.`;
      if (state.reason === "limited")
        return `Rate limited: too many stream opens from this ${state.detail ?? "client"}; trying again in ${seconds(state.retryInMs)}.`;
      if (state.reason === "unavailable")
        return `Service unavailable (${state.detail ?? "no answer"}); reconnecting in ${seconds(state.retryInMs)}.`;
      return `Connection dropped; reconnecting in ${seconds(state.retryInMs)}.`;
    case "failed":
      return `Cannot stream (${state.status}): ${state.message}`;
    case "stopped":
      return "Stopped on this page. The lock lapses unless this session reconnects; press Reconnect to resume.";
  }
}

/** A short tag for styling and tests: streaming, refused, lost, reconnecting, ... */
export const tag = (state: LockState): string => state.kind;
