import { describe, expect, it } from "vitest";
import { chartPoints, History, niceCeiling, ThroughputMeter, toMBps } from "../src/throughput";

describe("ThroughputMeter", () => {
  it("averages the bytes of the last window into bytes per second", () => {
    const m = new ThroughputMeter(2000);
    for (let t = 0; t < 2000; t += 100) m.add(100_000, t); // 20 x 100 kB in 2 s
    expect(m.rate(1999)).toBe(1_000_000);
    expect(toMBps(m.rate(1999))).toBe(1);
    expect(m.total).toBe(2_000_000);
  });

  it("forgets samples older than the window and reads 0 when the stream stalls", () => {
    const m = new ThroughputMeter(1000);
    m.add(500, 0);
    m.add(500, 900);
    expect(m.rate(950)).toBe(1000);
    expect(m.rate(1500)).toBe(500);
    expect(m.rate(5000)).toBe(0);
    expect(m.total).toBe(1000);
  });
});

describe("History and chart", () => {
  it("keeps only the newest values", () => {
    const h = new History(3);
    for (const v of [1, 5, 2, 3]) h.push(v);
    expect(h.items).toEqual([5, 2, 3]);
    expect(h.max).toBe(5);
  });

  it("places the newest value at the right edge, scaled to the top", () => {
    expect(chartPoints([0, 2], 100, 50, 3, 2)).toBe("50,50 100,0");
    expect(chartPoints([], 100, 50, 3)).toBe("");
    expect(chartPoints([4], 100, 50, 2, 2)).toBe("100,0"); // clipped at the top
  });

  it("rounds the axis top up to 1, 2, 2.5 or 5 times a power of ten", () => {
    expect(niceCeiling(0)).toBe(1);
    expect(niceCeiling(2.1)).toBe(2.5);
    expect(niceCeiling(0.07)).toBeCloseTo(0.1);
    expect(niceCeiling(3)).toBe(5);
    expect(niceCeiling(6)).toBe(10);
  });
});
