import { describe, expect, it } from "vitest";
import { loadSession, newSessionId, SESSION_KEY, SESSION_PATTERN, type KeyValueStore } from "../src/session";

class MemoryStore implements KeyValueStore {
  data = new Map<string, string>();
  getItem(key: string): string | null {
    return this.data.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.data.set(key, value);
  }
}

describe("session id", () => {
  it("is 32 hex characters the server accepts", () => {
    const id = newSessionId();
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(SESSION_PATTERN.test(id)).toBe(true);
  });

  it("survives a reload: the second load returns the stored id", () => {
    const store = new MemoryStore();
    const first = loadSession(store);
    expect(store.getItem(SESSION_KEY)).toBe(first);
    expect(loadSession(store)).toBe(first);
  });

  it("replaces a stored id the server would refuse", () => {
    const store = new MemoryStore();
    store.setItem(SESSION_KEY, "bad id!");
    const id = loadSession(store, () => "fresh-session-1");
    expect(id).toBe("fresh-session-1");
    expect(store.getItem(SESSION_KEY)).toBe("fresh-session-1");
  });

  it("still yields an id when storage throws or is missing", () => {
    const broken: KeyValueStore = {
      getItem: () => {
        throw new Error("denied");
      },
      setItem: () => {
        throw new Error("denied");
      },
    };
    expect(SESSION_PATTERN.test(loadSession(broken))).toBe(true);
    expect(SESSION_PATTERN.test(loadSession(null))).toBe(true);
  });

  it("gives another browser (another store) another id", () => {
    expect(loadSession(new MemoryStore())).not.toBe(loadSession(new MemoryStore()));
  });
});
