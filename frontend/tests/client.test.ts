import { describe, expect, it } from "vitest";
import { StreamClient, streamUrl, type ClientDeps, type Hello } from "../src/client";
import type { LockState } from "../src/state";
import type { DataEvent } from "../src/stats";

const enc = new TextEncoder();

function sse(...chunks: string[]): Response {
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      c.close();
    },
  });
  return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
}

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

const hello = (instance: string, token: number): string =>
  `event: hello\ndata: ${JSON.stringify({ v: 1, session: "s", instance, token, expires_at_ms: 0, user_id: "u", profile_id: "p" })}\n\n`;
const data = (seq: number, dropped = 0): string =>
  `id: ${seq}\nevent: data\ndata: ${JSON.stringify({ v: 1, seq, instance: "i", ts_ms: 0, token: 1, dropped, payload: "xx" })}\n\n`;

type Step = Response | Error;

/** A client whose fetch answers `steps` in order, then stops the client. */
function harness(steps: Step[]) {
  const states: LockState[] = [];
  const hellos: Hello[] = [];
  const events: DataEvent[] = [];
  const sleeps: number[] = [];
  const urls: string[] = [];
  let bytes = 0;
  let client: StreamClient;
  const deps: ClientDeps = {
    now: () => 1_000_000,
    sleep: async (ms) => void sleeps.push(ms),
    fetch: async (url) => {
      urls.push(url);
      const step = steps.shift();
      if (!step) {
        client.stop();
        throw new DOMException("stopped", "AbortError");
      }
      if (step instanceof Error) throw step;
      return step;
    },
  };
  client = new StreamClient(
    streamUrl("u", "p", "session-1"),
    {
      state: (s) => states.push(s),
      bytes: (n) => (bytes += n),
      hello: (h) => hellos.push(h),
      data: (e) => events.push(e),
    },
    deps,
  );
  return { client, states, hellos, events, sleeps, urls, bytes: () => bytes };
}

const kinds = (states: LockState[]): string[] => states.map((s) => s.kind);

describe("StreamClient", () => {
  it("streams: hello then data events, counting every raw byte", async () => {
    const chunks = [hello("stream-a", 3), data(1), data(2).slice(0, 10), data(2).slice(10)];
    const h = harness([sse(...chunks)]);
    await h.client.start();
    expect(h.hellos[0]!.instance).toBe("stream-a");
    expect(h.events.map((e) => e.seq)).toEqual([1, 2]);
    expect(h.bytes()).toBe(enc.encode(chunks.join("")).byteLength);
    expect(h.states[1]).toEqual({ kind: "streaming", instance: "stream-a", token: 3, expiresAtMs: 0 });
    // the stream ended without a closing event: reconnect after a short backoff
    expect(h.states[2]).toEqual({ kind: "reconnecting", reason: "disconnected", retryInMs: 500 });
  });

  it("asks for the pair with its session id", () => {
    expect(streamUrl("u 1", "p", "abc_DEF-12")).toBe("/stream/u%201/p?session=abc_DEF-12");
  });

  it("shows a 409 as refused with the expiry, retries, and streams once the lock is free", async () => {
    const h = harness([json(409, { error: "held", holder_expires_at_ms: 1_002_000 }), sse(hello("stream-b", 4))]);
    await h.client.start();
    expect(h.states[1]).toEqual({ kind: "refused", holderExpiresAtMs: 1_002_000, retryInMs: 2_250 });
    expect(h.sleeps[0]).toBe(2_250);
    expect(h.states[3]!.kind).toBe("streaming");
  });

  it("after a drain reconnects with the same session after the server's retry", async () => {
    const drain = 'retry: 300\nevent: reconnect\ndata: {"v":1,"reason":"draining","session":"session-1"}\n\n';
    const h = harness([sse(hello("stream-a", 5), data(1), drain, data(2)), sse(hello("stream-b", 5))]);
    await h.client.start();
    expect(kinds(h.states)).toEqual(["connecting", "streaming", "reconnecting", "connecting", "streaming", "reconnecting", "connecting"]);
    expect(h.states[2]).toEqual({ kind: "reconnecting", reason: "draining", retryInMs: 300 });
    expect(h.sleeps[0]).toBe(300);
    expect(h.events.map((e) => e.seq)).toEqual([1]); // nothing read after the reconnect event
    expect(new Set(h.urls)).toEqual(new Set([streamUrl("u", "p", "session-1")]));
    expect(h.hellos.map((x) => x.instance)).toEqual(["stream-a", "stream-b"]);
  });

  it("stops on lock-lost and says why", async () => {
    const h = harness([sse(hello("stream-a", 1), 'event: lock-lost\ndata: {"v":1,"reason":"refresh denied"}\n\n')]);
    await h.client.start();
    expect(h.states.at(-1)).toEqual({ kind: "lost", reason: "refresh denied" });
    expect(h.urls).toHaveLength(1);
    expect(h.client.running).toBe(false);
  });

  it("stops on superseded, names the newer token, and does not reconnect by itself", async () => {
    const superseded = 'event: superseded\ndata: {"v":1,"token":7,"held_token":6,"reason":"a newer stream took over"}\n\n';
    const h = harness([sse(hello("stream-a", 6), data(1), superseded, data(2)), sse(hello("stream-b", 8))]);
    await h.client.start();
    expect(h.states.at(-1)).toEqual({ kind: "superseded", token: 7 });
    expect(h.events.map((e) => e.seq)).toEqual([1]);
    expect(h.urls).toHaveLength(1);
    expect(h.client.running).toBe(false);
  });

  it("stops on 403/404: retrying cannot help", async () => {
    const h = harness([json(403, { error: "not bound" })]);
    await h.client.start();
    expect(h.states.at(-1)).toEqual({ kind: "failed", status: 403, message: "not bound" });
    expect(h.urls).toHaveLength(1);
  });

  it("backs off on 503 and network errors, and resets the backoff after a hello", async () => {
    const h = harness([
      json(503, { dependency: "base" }),
      new TypeError("network"),
      json(503, {}),
      sse(hello("stream-a", 1)),
      new TypeError("network"),
    ]);
    await h.client.start();
    expect(h.sleeps).toEqual([500, 1000, 2000, 500, 500]);
  });

  it("can be started again after a terminal state", async () => {
    const h = harness([json(404, {}), sse(hello("stream-a", 1))]);
    await h.client.start();
    expect(h.states.at(-1)!.kind).toBe("failed");
    await h.client.start();
    expect(h.hellos).toHaveLength(1);
  });
});
