import { describe, expect, it } from "vitest";
import { StreamStats } from "../src/stats";

describe("StreamStats drop accounting", () => {
  it("sums the server's dropped counts and checks them against seq gaps", () => {
    const s = new StreamStats();
    s.connected();
    s.event({ seq: 1, dropped: 0 });
    s.event({ seq: 4, dropped: 2 });
    s.event({ seq: 5, dropped: 0 });
    expect(s.events).toBe(3);
    expect(s.dropped).toBe(2);
    expect(s.unexplainedGaps).toBe(0);
    expect(s.dropRatio).toBeCloseTo(2 / 5);
  });

  it("counts a gap the server did not report as unexplained", () => {
    const s = new StreamStats();
    s.connected();
    s.event({ seq: 1, dropped: 0 });
    s.event({ seq: 3, dropped: 0 });
    expect(s.unexplainedGaps).toBe(1);
  });

  it("restarts seq checking on each connection but keeps the totals", () => {
    const s = new StreamStats();
    s.connected();
    s.event({ seq: 1, dropped: 0 });
    s.event({ seq: 2, dropped: 0 });
    s.connected();
    s.event({ seq: 3, dropped: 2 }); // the new stream's first event: 2 dropped before it
    s.received(1234);
    expect(s.connections).toBe(2);
    expect(s.events).toBe(3);
    expect(s.dropped).toBe(2);
    expect(s.unexplainedGaps).toBe(0);
    expect(s.bytes).toBe(1234);
  });

  it("reads a ratio of 0 before any event", () => {
    expect(new StreamStats().dropRatio).toBe(0);
  });
});
