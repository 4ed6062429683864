// Generated from the msgspec structs in src/kubescaler/domain/sse.py by
// `uv run python -m kubescaler.entrypoints.typescript`. Do not edit: a test fails when it is
// stale.

/** A `data` event: the stream's payload, numbered. `seq` counts every event the server produced for this stream, sent or dropped; `dropped` is how many were dropped since the previous event sent. */
export interface DataEvent {
  v: number;
  seq: number;
  instance: string;
  ts_ms: number;
  token: number;
  dropped: number;
  payload: string;
}

/** The stream is granted: whose it is, where it runs, its fencing token and lock expiry. */
export interface Hello {
  v: number;
  session: string;
  instance: string;
  token: number;
  expires_at_ms: number;
  user_id: string;
  profile_id: string;
}

/** A refresh found the lock gone or taken: the stream ends. */
export interface LockLost {
  v: number;
  reason: string;
}

/** This instance drains: reconnect (after the SSE `retry`) with the same session. */
export interface Reconnect {
  v: number;
  reason: string;
  session: string;
}

/** A newer grant of the same pair (`token`) ended this stream (which held `held_token`). */
export interface Superseded {
  v: number;
  token: number;
  held_token: number;
  reason: string;
}

/** The SSE event name of each event. */
export const EVENT_NAMES = { DataEvent: "data", Hello: "hello", LockLost: "lock-lost", Reconnect: "reconnect", Superseded: "superseded" } as const;
