/**
 * The stream client: reads the pair's SSE stream with fetch (so a refusal's status and JSON
 * body are visible, which EventSource hides), and reconnects by itself. No DOM: the page passes
 * callbacks, and tests pass a fake fetch, clock and sleep.
 */

import { withToken } from "./auth";
import { EVENT_NAMES, type DataEvent, type Hello } from "./events";
import { SseParser, type SseMessage } from "./sse";
import { backoffMs, drainRetryMs, onRefusal, type LockState, type RefusalBody } from "./state";

export type { Hello } from "./events";

export interface StreamListener {
  state(state: LockState): void;
  /** Raw bytes of the stream body, as each chunk arrives. */
  bytes(count: number): void;
  hello(hello: Hello): void;
  data(event: DataEvent): void;
}

export interface ClientDeps {
  fetch: (url: string, init: RequestInit) => Promise<Response>;
  now: () => number;
  /** Resolves after ms, or early when the signal aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
}

export const browserDeps = (): ClientDeps => ({
  fetch: (url, init) => fetch(url, init),
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    }),
});

/** The pair's stream URL; with a token (the query form) it carries `access_token` too. */
export function streamUrl(userId: string, profileId: string, session: string, token: string | null = null): string {
  const path = `/stream/${encodeURIComponent(userId)}/${encodeURIComponent(profileId)}`;
  return withToken(`${path}?session=${encodeURIComponent(session)}`, token);
}

/**
 * Terminal states end the loop until `start()` is called again. Superseded is one: reconnecting
 * by itself would supersede the newer stream in turn, and the two would take turns for ever.
 */
const isTerminal = (s: LockState): boolean =>
  s.kind === "lost" || s.kind === "superseded" || s.kind === "failed";

export class StreamClient {
  private controller: AbortController | null = null;
  private wake: AbortController | null = null;
  /** The last `retry:` the server sent, used as the drain reconnect delay. */
  private retryMs: number | null = null;

  constructor(
    private readonly url: string,
    private readonly listener: StreamListener,
    private readonly deps: ClientDeps,
  ) {}

  get running(): boolean {
    return this.controller !== null;
  }

  /** Start (or restart after a terminal state); returns when the client stops. */
  async start(): Promise<void> {
    if (this.controller) {
      this.wake?.abort(); // already running: cut a pending wait short
      return;
    }
    const controller = new AbortController();
    this.controller = controller;
    try {
      await this.loop(controller.signal);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }

  /** Close the stream and stop reconnecting. */
  stop(): void {
    this.controller?.abort();
    this.controller = null;
  }

  private async loop(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      attempt += 1;
      this.listener.state({ kind: "connecting", attempt });
      let next: LockState;
      try {
        const response = await this.deps.fetch(this.url, {
          signal,
          cache: "no-store",
          credentials: "same-origin", // the cookie form: the HttpOnly token cookie goes along
          headers: { Accept: "text/event-stream" },
        });
        if (!response.ok || !response.body) {
          const body = await readJson(response);
          next = onRefusal(response.status, body, attempt, this.deps.now());
        } else {
          next = await this.read(response.body, signal, () => (attempt = 0));
        }
      } catch {
        if (signal.aborted) return;
        next = { kind: "reconnecting", reason: "disconnected", retryInMs: backoffMs(Math.max(1, attempt)) };
      }
      if (signal.aborted) return;
      this.listener.state(next);
      if (isTerminal(next)) return;
      if ("retryInMs" in next) {
        const wake = new AbortController();
        this.wake = wake;
        signal.addEventListener("abort", () => wake.abort(), { once: true });
        await this.deps.sleep(next.retryInMs, wake.signal);
        this.wake = null;
      }
    }
  }

  /** Read one open stream to its end; returns the state it ended in. */
  private async read(
    body: ReadableStream<Uint8Array>,
    signal: AbortSignal,
    onHello: () => void,
  ): Promise<LockState> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.listener.bytes(value.byteLength);
        for (const message of parser.feed(decoder.decode(value, { stream: true }))) {
          if (message.retry !== null) this.retryMs = message.retry;
          const end = this.handle(message, onHello);
          if (end) return end;
        }
        if (signal.aborted) break;
      }
    } finally {
      reader.cancel().catch(() => undefined);
    }
    return { kind: "reconnecting", reason: "disconnected", retryInMs: backoffMs(1) };
  }

  private handle(message: SseMessage, onHello: () => void): LockState | null {
    switch (message.event) {
      case EVENT_NAMES.Hello: {
        const hello = JSON.parse(message.data) as Hello;
        onHello();
        this.listener.hello(hello);
        this.listener.state({
          kind: "streaming",
          instance: hello.instance,
          token: hello.token,
          expiresAtMs: hello.expires_at_ms,
        });
        return null;
      }
      case EVENT_NAMES.DataEvent:
        this.listener.data(JSON.parse(message.data) as DataEvent);
        return null;
      case EVENT_NAMES.LockLost: {
        const reason = parseField(message.data, "reason") ?? "unknown";
        return { kind: "lost", reason };
      }
      case EVENT_NAMES.Superseded: {
        const token = parseNumber(message.data, "token");
        return { kind: "superseded", token: token ?? 0 };
      }
      case EVENT_NAMES.Reconnect:
        return { kind: "reconnecting", reason: "draining", retryInMs: drainRetryMs(this.retryMs) };
      default:
        return null;
    }
  }
}

async function readJson(response: Response): Promise<RefusalBody | null> {
  try {
    return (await response.json()) as RefusalBody;
  } catch {
    return null;
  }
}

function parseField(data: string, field: string): string | null {
  try {
    const value: unknown = (JSON.parse(data) as Record<string, unknown>)[field];
    return typeof value === "string" ? value : null;
  } catch {
    return null;
  }
}

function parseNumber(data: string, field: string): number | null {
  try {
    const value: unknown = (JSON.parse(data) as Record<string, unknown>)[field];
    return typeof value === "number" ? value : null;
  } catch {
    return null;
  }
}
