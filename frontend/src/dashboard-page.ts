/** The dashboard at / and /dashboard: suggested users, their live profiles, stream instances. */

import {
  authHeaders,
  describeIdentity,
  identity,
  looksLikeJwt,
  tokenFromSearch,
  type Identity,
  type WhoAmI,
} from "./auth";
import {
  indexHref,
  isUuid,
  mapLimit,
  mergeInstances,
  totalConnections,
  userRows,
  type InstanceReading,
  type InstanceRow,
  type SuggestedUser,
} from "./dashboard";
import { byId, element } from "./dom";
import * as fmt from "./format";

const REFRESH_MS = 5000;
const PAGE = 25;
/** /instance requests per refresh: through the entry point each may reach another instance. */
const INSTANCE_PROBES = 4;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The query form's token (the page was opened with ?access_token=); null: cookie or none. */
const token = tokenFromSearch(location.search);
let who: Identity = { kind: "signed-out", reason: "not asked yet" };

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url, {
    cache: "no-store",
    credentials: "same-origin",
    headers: { Accept: "application/json", ...authHeaders(token) },
  });
  if (!r.ok) {
    const body = (await r.json().catch(() => null)) as { error?: string; dependency?: string } | null;
    const why = body?.dependency ? `${body.dependency} did not answer` : (body?.error ?? r.statusText);
    throw new HttpError(r.status, `${url}: ${r.status} ${why}`);
  }
  return (await r.json()) as T;
}

let instances = new Map<string, InstanceRow>();
let shown = PAGE;
let suggested: SuggestedUser[] = [];

async function refreshInstances(): Promise<void> {
  const probes = Array.from({ length: INSTANCE_PROBES }, () =>
    getJson<InstanceReading>("/instance").catch(() => null),
  );
  const readings = (await Promise.all(probes)).filter((r): r is InstanceReading => r !== null);
  instances = mergeInstances(instances, readings, Date.now());
  const body = byId("instances").querySelector("tbody")!;
  const now = Date.now();
  body.replaceChildren(
    ...[...instances.values()].map((row) =>
      element(
        "tr",
        {},
        element("td", {}, element("code", { text: row.instance })),
        element("td", { className: "num", text: fmt.integer(row.connections) }),
        element("td", {}, element("span", { className: row.draining ? "badge draining" : "badge live", text: row.draining ? "draining" : "serving" })),
        element("td", { className: "num", text: `${Math.round((now - row.seenAtMs) / 1000)} s ago` }),
      ),
    ),
  );
  const { total, instances: count } = totalConnections(instances.values());
  byId("instances-total").textContent =
    count === 0
      ? "No stream instance answered /instance."
      : `${fmt.integer(total)} connection${total === 1 ? "" : "s"} over the ${count} instance${count === 1 ? "" : "s"} seen.`;
}

async function refreshUsers(): Promise<void> {
  const error = byId("users-error");
  try {
    suggested = await getJson<SuggestedUser[]>("/main/suggested");
    error.textContent = "";
  } catch (e) {
    error.textContent = `Could not read the suggested users: ${(e as Error).message}`;
  }
  const page = suggested.slice(0, shown);
  const lives = await mapLimit(page, 6, (u) =>
    getJson<string[]>(`/main/login/${encodeURIComponent(u.id)}`).catch(() => null),
  );
  const live = new Map(page.map((u, i) => [u.id, lives[i] ?? null] as const));
  const me = who.kind === "signed-in" ? who.subject : null;
  const rows = userRows(page, live, token, me);
  byId("users").querySelector("tbody")!.replaceChildren(
    ...rows.map((row) => {
      const profiles = element(
        "ul",
        { className: "profiles" },
        ...row.profiles.map((p) => {
          const link = element("a", { href: p.href }, element("code", { text: p.id.slice(0, 8) }));
          link.setAttribute("aria-label", `Open stream for profile ${p.id}${p.live ? " (live)" : ""}`);
          link.title = p.id;
          const item = element("li", {}, link);
          if (p.live) item.append(" ", element("span", { className: "badge live", text: "live" }));
          item.dataset.profile = p.id;
          item.dataset.live = String(p.live);
          return item;
        }),
      );
      const liveText = row.liveKnown ? fmt.integer(row.liveCount) : "unknown";
      const userCell = element("td", {}, element("code", { text: row.id }));
      if (row.mine) userCell.append(" ", element("span", { className: "badge you", text: "you" }));
      const tr = element(
        "tr",
        {},
        userCell,
        element("td", {}, profiles),
        element("td", { className: "num", text: liveText }),
      );
      tr.dataset.user = row.id;
      tr.dataset.mine = String(row.mine);
      return tr;
    }),
  );
  const more = byId<HTMLButtonElement>("more");
  more.hidden = suggested.length <= shown;
  byId("users-count").textContent = `Showing ${page.length} of ${suggested.length}.`;
}

/** Who the token says you are (`/auth/session`), shown above everything. */
async function refreshIdentity(): Promise<void> {
  let status = 0;
  let body: WhoAmI | { error?: string } | null = null;
  try {
    const r = await fetch("/auth/session", {
      cache: "no-store",
      credentials: "same-origin",
      headers: { Accept: "application/json", ...authHeaders(token) },
    });
    status = r.status;
    body = (await r.json().catch(() => null)) as WhoAmI | { error?: string } | null;
  } catch {
    body = { error: "no answer" };
  }
  who = identity(status, body, token);
  const line = byId("who");
  line.textContent = describeIdentity(who);
  line.dataset.state = who.kind;
  // sign-in and -out are the cookie form's; the query form and auth off have nothing to keep
  byId("signin").hidden = who.kind !== "signed-out" || token !== null;
  byId("signout").hidden = !(who.kind === "signed-in" && who.via === "cookie");
  if (who.kind === "signed-in" && !byId<HTMLInputElement>("open-user").value) {
    byId<HTMLInputElement>("open-user").value = who.subject;
  }
}

function wireSignIn(): void {
  const form = byId<HTMLFormElement>("signin");
  const error = byId("signin-error");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byId<HTMLInputElement>("signin-token");
    const value = input.value.trim();
    if (!looksLikeJwt(value)) {
      error.textContent = "That is not a token: a token is three dot-separated parts (eyJ…).";
      return;
    }
    void (async () => {
      const r = await fetch("/auth/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", Authorization: `Bearer ${value}` },
      });
      if (!r.ok) {
        const body = (await r.json().catch(() => null)) as { error?: string } | null;
        error.textContent = `Sign-in refused (${r.status}): ${body?.error ?? r.statusText}`;
        return;
      }
      input.value = ""; // the cookie holds it now, out of reach of scripts
      error.textContent = "";
      await refreshIdentity(); // at once, even while a periodic refresh is under way
      void refresh();
    })();
  });
  byId("signout").addEventListener("click", () => {
    void fetch("/auth/session", { method: "DELETE", credentials: "same-origin" })
      .then(() => refreshIdentity())
      .then(() => refresh());
  });
}

let running = false;
async function refresh(): Promise<void> {
  if (running) return;
  running = true;
  try {
    await refreshIdentity();
    await Promise.all([refreshInstances(), refreshUsers()]);
    byId("updated").textContent = `Updated at ${fmt.clock(Date.now())}; refreshes every ${REFRESH_MS / 1000} s.`;
  } finally {
    running = false;
  }
}

function wireForm(): void {
  const form = byId<HTMLFormElement>("open");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const user = byId<HTMLInputElement>("open-user").value.trim();
    const profile = byId<HTMLInputElement>("open-profile").value.trim();
    if (!isUuid(user) || !isUuid(profile)) {
      byId("open-error").textContent = "Both ids must be UUIDs, like 123e4567-e89b-12d3-a456-426614174000.";
      return;
    }
    location.assign(indexHref(user, profile, token));
  });
  wireSignIn();
  byId("more").addEventListener("click", () => {
    shown += PAGE;
    void refresh();
  });
}

wireForm();
void refresh();
setInterval(() => void refresh(), REFRESH_MS);
