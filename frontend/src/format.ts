/** Number formatting shared by both pages. Pure. */

export const integer = (n: number): string => Math.round(n).toLocaleString("en-US");

/** Bytes in decimal units: 999 B, 1.23 kB, 4.56 MB, 7.89 GB. */
export function bytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(2)} ${units[unit]}`;
}

/** A rate in MB/s with two decimals. */
export const mbps = (megabytesPerSecond: number): string => `${megabytesPerSecond.toFixed(2)} MB/s`;

export const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)} %`;

export const clock = (ms: number): string =>
  new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
