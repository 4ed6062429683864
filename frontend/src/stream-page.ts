/** The stream page at /index/{user_id}/{profile_id}: wires the client to the DOM. */

import { tokenFromSearch, withToken } from "./auth";
import { browserDeps, StreamClient, streamUrl } from "./client";
import { byId, show } from "./dom";
import * as fmt from "./format";
import { loadSession } from "./session";
import { describe, type LockState } from "./state";
import { StreamStats } from "./stats";
import { chartPoints, History, niceCeiling, ThroughputMeter, toMBps } from "./throughput";

const CHART_W = 600;
const CHART_H = 160;
const CHART_SLOTS = 60;

function pairFromPath(path: string): [string, string] | null {
  const parts = path.split("/").filter(Boolean);
  if (parts.length !== 3 || parts[0] !== "index") return null;
  return [decodeURIComponent(parts[1]!), decodeURIComponent(parts[2]!)];
}

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function main(): void {
  const pair = pairFromPath(location.pathname);
  const stateEl = byId("state");
  if (!pair) {
    stateEl.textContent = "This page needs a pair: /index/{user_id}/{profile_id}.";
    stateEl.dataset.state = "failed";
    return;
  }
  const [user, profile] = pair;
  document.title = `Stream ${user.slice(0, 8)}… / ${profile.slice(0, 8)}… · kubescaler`;
  show(byId("user"), user);
  show(byId("profile"), profile);
  const session = loadSession(storage());
  show(byId("session"), session);
  // the query form: a page opened with ?access_token= streams (and links back) with it; else
  // the HttpOnly cookie from the dashboard's sign-in goes along by itself (or auth is off)
  const token = tokenFromSearch(location.search);
  show(byId("auth-form"), token ? "in this page's address (?access_token=)" : "cookie, if signed in");
  const back = document.querySelector<HTMLAnchorElement>('nav a[href="/dashboard"]');
  if (back) back.href = withToken("/dashboard", token);

  const stats = new StreamStats();
  const meter = new ThroughputMeter(2000);
  const history = new History(CHART_SLOTS);
  // the counters every 250 ms, and at once on every state change, so a page that says it
  // stopped (superseded, lost) shows the final counts with it, not a tick later
  const render = (): void => {
    const rate = toMBps(meter.rate(performance.now()));
    show(byId("rate"), fmt.mbps(rate), rate);
    show(byId("events"), fmt.integer(stats.events), stats.events);
    show(byId("bytes"), `${fmt.bytes(stats.bytes)} (${fmt.integer(stats.bytes)} B)`, stats.bytes);
    const drops =
      stats.dropped === 0 ? "0" : `${fmt.integer(stats.dropped)} (${fmt.percent(stats.dropRatio)} of produced)`;
    const gaps = stats.unexplainedGaps ? `; ${fmt.integer(stats.unexplainedGaps)} unreported gaps` : "";
    show(byId("dropped"), drops + gaps, stats.dropped);
    show(byId("connections"), fmt.integer(stats.connections), stats.connections);
  };

  const reconnect = byId<HTMLButtonElement>("reconnect");
  const stop = byId<HTMLButtonElement>("stop");
  const setState = (next: LockState): void => {
    stateEl.dataset.state = next.kind;
    show(stateEl, describe(next));
    if (next.kind === "streaming") {
      show(byId("instance"), next.instance);
      show(byId("token"), String(next.token), next.token);
    }
    reconnect.disabled = next.kind === "streaming" || next.kind === "connecting";
    stop.disabled = ["stopped", "lost", "superseded", "failed"].includes(next.kind);
    render();
  };

  const client = new StreamClient(
    streamUrl(user, profile, session, token),
    {
      state: setState,
      bytes: (n) => {
        stats.received(n);
        meter.add(n, performance.now());
      },
      hello: () => stats.connected(),
      data: (ev) => stats.event(ev),
    },
    browserDeps(),
  );

  reconnect.addEventListener("click", () => void client.start());
  stop.addEventListener("click", () => {
    client.stop();
    setState({ kind: "stopped" });
  });

  const chart = (): void => {
    history.push(toMBps(meter.rate(performance.now())));
    const top = niceCeiling(history.max);
    byId("chart-line").setAttribute("points", chartPoints(history.items, CHART_W, CHART_H, CHART_SLOTS, top));
    show(byId("chart-max"), fmt.mbps(top));
    const now = history.items.at(-1) ?? 0;
    show(byId("chart-desc"), `Throughput over the last ${history.items.length} s, now ${fmt.mbps(now)}, peak ${fmt.mbps(history.max)}`);
  };

  setInterval(render, 250);
  setInterval(chart, 1000);
  void client.start();
}

main();
