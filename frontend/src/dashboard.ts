/**
 * The dashboard's data: suggested users with their profiles and which are live, and the stream
 * instances seen so far. Pure; the page fetches and renders.
 */

import { withToken } from "./auth";

export interface SuggestedUser {
  id: string;
  profiles: string[];
}

export interface InstanceReading {
  instance: string;
  connections: number;
  draining: boolean;
}

export interface InstanceRow extends InstanceReading {
  seenAtMs: number;
}

/**
 * Each request through the entry point reaches one stream instance, so the dashboard keeps the
 * latest reading per instance name with when it was taken, and forgets names not seen for
 * `forgetAfterMs` (a stopped instance).
 */
export function mergeInstances(
  known: ReadonlyMap<string, InstanceRow>,
  readings: readonly InstanceReading[],
  nowMs: number,
  forgetAfterMs = 60_000,
): Map<string, InstanceRow> {
  const out = new Map<string, InstanceRow>();
  for (const [name, row] of known) if (nowMs - row.seenAtMs <= forgetAfterMs) out.set(name, row);
  for (const r of readings) out.set(r.instance, { ...r, seenAtMs: nowMs });
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)));
}

export interface UserRow {
  id: string;
  /** The signed-in user's own row. */
  mine: boolean;
  profiles: { id: string; live: boolean; href: string }[];
  liveCount: number;
  /** null when this user's live profiles could not be read. */
  liveKnown: boolean;
}

/** The stream page of a pair; in the query form (a token) the link carries the token. */
export const indexHref = (userId: string, profileId: string, token: string | null = null): string =>
  withToken(`/index/${encodeURIComponent(userId)}/${encodeURIComponent(profileId)}`, token);

/** Rows for the users table: each suggested profile marked live or not, ``me``'s row marked. */
export function userRows(
  users: readonly SuggestedUser[],
  live: ReadonlyMap<string, readonly string[] | null>,
  token: string | null = null,
  me: string | null = null,
): UserRow[] {
  return users.map((u) => {
    const liveIds = live.get(u.id);
    const set = new Set(liveIds ?? []);
    return {
      id: u.id,
      mine: me !== null && u.id.toLowerCase() === me.toLowerCase(),
      profiles: u.profiles.map((p) => ({ id: p, live: set.has(p), href: indexHref(u.id, p, token) })),
      liveCount: set.size,
      liveKnown: liveIds !== null && liveIds !== undefined,
    };
  });
}

/** The total connections over the instances seen, and how many instances that covers. */
export function totalConnections(rows: Iterable<InstanceRow>): { total: number; instances: number } {
  let total = 0;
  let instances = 0;
  for (const r of rows) {
    total += r.connections;
    instances += 1;
  }
  return { total, instances };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (s: string): boolean => UUID.test(s.trim());

/** Run `work` over `items` with at most `limit` at a time; results keep the items' order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
