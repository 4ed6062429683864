// Generated from the msgspec structs in src/kubescaler/domain/stream.py by
// `uv run python -m kubescaler.entrypoints.sse`. Do not edit: a test fails when it is stale.

/** The `data` of one stream event. `seq` counts every event the server produced for this stream, sent or dropped; `dropped` is how many were dropped since the previous event sent. */
export interface DataEvent {
  seq: number;
  instance: string;
  ts_ms: number;
  token: number;
  dropped: number;
  payload: string;
}

/** The stream is granted: whose it is, where it runs, its fencing token and lock expiry. */
export interface Hello {
  session: string;
  instance: string;
  token: number;
  expires_at_ms: number;
  user_id: string;
  profile_id: string;
  v: number;
}

/** A refresh found the lock gone or taken: the stream ends. */
export interface LockLost {
  reason: string;
  v: number;
}

/** This instance drains: reconnect (after the SSE `retry`) with the same session. */
export interface Reconnect {
  reason: string;
  session: string;
  v: number;
}

/** A newer grant of the same pair (`token`) ended this stream (which held `held_token`). */
export interface Superseded {
  token: number;
  held_token: number;
  reason: string;
  v: number;
}

/** The SSE event name of each control event. */
export const EVENT_NAMES = { Hello: "hello", LockLost: "lock-lost", Reconnect: "reconnect", Superseded: "superseded" } as const;
