/**
 * The client's session id: kept in localStorage so a reload (or a reopened tab) presents the
 * same id and the server hands the pair's lock straight back instead of refusing it. Tabs of
 * one browser share it. Pure apart from the storage it is given.
 */

export const SESSION_KEY = "kubescaler-session";

/** What the server accepts: 8-64 of A-Z a-z 0-9 _ -. */
export const SESSION_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;

export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** 32 hex characters from the platform's random source. */
export function newSessionId(random: (bytes: Uint8Array) => Uint8Array = defaultRandom): string {
  const bytes = random(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const defaultRandom = (bytes: Uint8Array): Uint8Array => crypto.getRandomValues(bytes);

/**
 * The stored session id, or a new one stored for next time. A missing or broken store (private
 * mode, storage disabled) still yields a valid id, kept for this page's life only.
 */
export function loadSession(store: KeyValueStore | null, make: () => string = newSessionId): string {
  try {
    const kept = store?.getItem(SESSION_KEY);
    if (kept && SESSION_PATTERN.test(kept)) return kept;
  } catch {
    // storage refused: fall through to a fresh id
  }
  const id = make();
  try {
    store?.setItem(SESSION_KEY, id);
  } catch {
    // not persisted: a reload will start a new session (and may wait for the old lock)
  }
  return id;
}
