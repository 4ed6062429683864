import { describe, expect, it } from "vitest";
import { backoffMs, describe as words, drainRetryMs, onRefusal, refusedRetryMs } from "../src/state";

describe("refusals", () => {
  it("409 is 'refused' with the holder's expiry and a retry just after it", () => {
    const s = onRefusal(409, { error: "held", holder_expires_at_ms: 10_000 }, 1, 7_000);
    expect(s).toEqual({ kind: "refused", holderExpiresAtMs: 10_000, retryInMs: 3_250 });
    expect(words(s)).toMatch(/^Refused: another session holds this pair until .+\. Trying again in 3\.3 s\.$/);
  });

  it("bounds the 409 retry between 1 and 30 seconds", () => {
    expect(refusedRetryMs(1_000, 5_000)).toBe(1_000);
    expect(refusedRetryMs(500_000, 0)).toBe(30_000);
    expect(refusedRetryMs(null, 0)).toBe(5_000);
  });

  it("503 names the dependency and backs off; 502/504 from the entry point too", () => {
    const s = onRefusal(503, { dependency: "redis" }, 3, 0);
    expect(s).toEqual({ kind: "reconnecting", reason: "unavailable", retryInMs: 2_000, detail: "redis did not answer" });
    expect(words(s)).toContain("redis did not answer");
    expect(onRefusal(502, null, 1, 0).kind).toBe("reconnecting");
  });

  it("400, 403 and 404 are final and say the server's reason", () => {
    const s = onRefusal(403, { error: "user u is not bound to profile p" }, 1, 0);
    expect(s).toEqual({ kind: "failed", status: 403, message: "user u is not bound to profile p" });
    expect(words(s)).toBe("Cannot stream (403): user u is not bound to profile p");
    expect(onRefusal(404, null, 1, 0)).toEqual({ kind: "failed", status: 404, message: "HTTP 404" });
  });
});

describe("reconnect timing", () => {
  it("backs off 0.5, 1, 2, 4, 8 s, capped at 10 s", () => {
    expect([1, 2, 3, 4, 5, 6, 20].map((a) => backoffMs(a))).toEqual([500, 1000, 2000, 4000, 8000, 10000, 10000]);
  });

  it("uses the server's retry after a drain, 500 ms without one", () => {
    expect(drainRetryMs(250)).toBe(250);
    expect(drainRetryMs(null)).toBe(500);
  });
});

describe("plain words", () => {
  it("says streaming, lost and draining plainly", () => {
    expect(words({ kind: "streaming", instance: "stream-a", token: 12, expiresAtMs: 0 })).toBe(
      "Streaming from stream-a: this session holds the lock (fencing token 12).",
    );
    expect(words({ kind: "lost", reason: "expired" })).toMatch(/^Lock lost \(expired\)/);
    expect(words({ kind: "superseded", token: 7 })).toMatch(
      /^Superseded: this session opened a newer stream of this pair \(fencing token 7\)/,
    );
    expect(words({ kind: "reconnecting", reason: "draining", retryInMs: 500 })).toMatch(/^Reconnecting after a drain/);
    expect(words({ kind: "connecting", attempt: 1 })).toBe("Connecting…");
  });
});
