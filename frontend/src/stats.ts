/**
 * What the page counts about a stream, across reconnects. Pure.
 *
 * The server numbers every event it produces for one connection (`seq`, from 1), sent or
 * dropped, and each event it sends says how many it dropped since the previous one sent
 * (`dropped`). So within one connection seq - previous seq - 1 == dropped; anything else
 * (never expected) is counted as `unexplainedGaps` so the page can say so.
 */

import type { DataEvent } from "./events";

export type { DataEvent } from "./events";

export class StreamStats {
  events = 0;
  bytes = 0;
  dropped = 0;
  unexplainedGaps = 0;
  connections = 0;
  private lastSeq: number | null = null;

  /** A new connection began (its `seq` starts again). */
  connected(): void {
    this.connections += 1;
    this.lastSeq = null;
  }

  /** Raw bytes of the stream body, counted as they arrive (events and framing alike). */
  received(bytes: number): void {
    this.bytes += bytes;
  }

  /** One `data` event. */
  event(ev: Pick<DataEvent, "seq" | "dropped">): void {
    this.events += 1;
    const dropped = Math.max(0, ev.dropped);
    this.dropped += dropped;
    if (this.lastSeq !== null) {
      const gap = ev.seq - this.lastSeq - 1;
      if (gap !== dropped) this.unexplainedGaps += 1;
    }
    this.lastSeq = ev.seq;
  }

  /** Share of produced events the server dropped, 0..1 (0 before any event). */
  get dropRatio(): number {
    const produced = this.events + this.dropped;
    return produced === 0 ? 0 : this.dropped / produced;
  }
}
