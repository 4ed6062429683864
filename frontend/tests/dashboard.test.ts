import { describe, expect, it } from "vitest";
import { indexHref, isUuid, mapLimit, mergeInstances, totalConnections, userRows } from "../src/dashboard";

describe("instances seen through the entry point", () => {
  it("keeps the latest reading per instance, sorted, and forgets silent ones", () => {
    let known = mergeInstances(new Map(), [{ instance: "stream-b", connections: 2, draining: false }], 0);
    known = mergeInstances(known, [{ instance: "stream-a", connections: 1, draining: false }], 10_000);
    expect([...known.keys()]).toEqual(["stream-a", "stream-b"]);
    expect(totalConnections(known.values())).toEqual({ total: 3, instances: 2 });
    known = mergeInstances(known, [{ instance: "stream-a", connections: 4, draining: true }], 70_000);
    expect([...known.keys()]).toEqual(["stream-a"]);
    expect(known.get("stream-a")).toEqual({ instance: "stream-a", connections: 4, draining: true, seenAtMs: 70_000 });
  });
});

describe("user rows", () => {
  it("marks live profiles and links each profile to its stream page", () => {
    const rows = userRows(
      [
        { id: "u1", profiles: ["p1", "p2"] },
        { id: "u2", profiles: ["p3"] },
      ],
      new Map([
        ["u1", ["p2"]],
        ["u2", null],
      ]),
    );
    expect(rows[0]).toEqual({
      id: "u1",
      mine: false,
      profiles: [
        { id: "p1", live: false, href: "/index/u1/p1" },
        { id: "p2", live: true, href: "/index/u1/p2" },
      ],
      liveCount: 1,
      liveKnown: true,
    });
    expect(rows[1]!.liveKnown).toBe(false);
  });

  it("carries the query form's token in links and marks the signed-in user's row", () => {
    const rows = userRows(
      [
        { id: "U1", profiles: ["p1"] },
        { id: "u2", profiles: ["p2"] },
      ],
      new Map(),
      "a.b+c",
      "u1",
    );
    expect(rows.map((r) => r.mine)).toEqual([true, false]);
    expect(rows[0]!.profiles[0]!.href).toBe("/index/U1/p1?access_token=a.b%2Bc");
    expect(indexHref("u", "p", null)).toBe("/index/u/p");
  });

  it("escapes ids in links and checks UUIDs", () => {
    expect(indexHref("a/b", "c")).toBe("/index/a%2Fb/c");
    expect(isUuid("123e4567-e89b-12d3-a456-426614174000")).toBe(true);
    expect(isUuid("123e4567")).toBe(false);
  });
});

describe("mapLimit", () => {
  it("keeps order and never runs more than the limit at once", async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5 - n));
      running -= 1;
      return n * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50]);
    expect(peak).toBe(2);
  });
});
