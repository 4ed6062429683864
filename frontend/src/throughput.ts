/**
 * Throughput over a sliding window, and a short history of per-interval rates for the chart.
 * Pure: time is passed in (ms), so tests drive it.
 */

export class ThroughputMeter {
  private samples: { t: number; bytes: number }[] = [];
  total = 0;

  constructor(readonly windowMs = 2000) {}

  /** Count `bytes` received at time `t` (ms). */
  add(bytes: number, t: number): void {
    this.total += bytes;
    this.samples.push({ t, bytes });
    this.prune(t);
  }

  /** Bytes per second over the last window ending at `t`; 0 with nothing received in it. */
  rate(t: number): number {
    this.prune(t);
    let sum = 0;
    for (const s of this.samples) sum += s.bytes;
    return (sum * 1000) / this.windowMs;
  }

  private prune(t: number): void {
    const from = t - this.windowMs;
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop]!.t <= from) drop++;
    if (drop) this.samples.splice(0, drop);
  }
}

/** A fixed-length ring of the latest values, oldest first. */
export class History {
  private values: number[] = [];

  constructor(readonly length = 60) {}

  push(value: number): void {
    this.values.push(value);
    if (this.values.length > this.length) this.values.shift();
  }

  get items(): readonly number[] {
    return this.values;
  }

  get max(): number {
    return this.values.reduce((a, b) => Math.max(a, b), 0);
  }
}

/** Megabytes (10^6 bytes) per second, from bytes per second. */
export const toMBps = (bytesPerSecond: number): number => bytesPerSecond / 1e6;

/**
 * The points of a line chart of `values` in a `width` x `height` box (SVG user units), the
 * newest value at the right edge; the y scale tops out at `max` (at least 1 to avoid 0/0).
 */
export function chartPoints(
  values: readonly number[],
  width: number,
  height: number,
  slots: number,
  max = Math.max(1, ...values),
): string {
  if (values.length === 0) return "";
  const step = slots > 1 ? width / (slots - 1) : 0;
  const offset = slots - values.length;
  return values
    .map((v, i) => {
      const x = (offset + i) * step;
      const y = height - (Math.min(v, max) / max) * height;
      return `${round(x)},${round(y)}`;
    })
    .join(" ");
}

const round = (n: number): number => Math.round(n * 10) / 10;

/** A "nice" top for a chart axis at or above `value`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * power) return m * power;
  return 10 * power;
}
