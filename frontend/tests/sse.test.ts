import { describe, expect, it } from "vitest";
import { SseParser } from "../src/sse";

describe("SseParser", () => {
  it("parses the stream service's events with id, event and data", () => {
    const p = new SseParser();
    const out = p.feed('event: hello\ndata: {"token":7}\n\nid: 1\nevent: data\ndata: {"seq":1}\n\n');
    expect(out).toEqual([
      { event: "hello", data: '{"token":7}', id: null, retry: null },
      { event: "data", data: '{"seq":1}', id: "1", retry: null },
    ]);
    expect(p.lastEventId).toBe("1");
  });

  it("keeps partial lines across chunks, even split inside a CRLF", () => {
    const p = new SseParser();
    expect(p.feed("event: da")).toEqual([]);
    expect(p.feed("ta\r")).toEqual([]);
    expect(p.feed("\ndata: x\r\n")).toEqual([]);
    expect(p.feed("\r\n")).toEqual([{ event: "data", data: "x", id: null, retry: null }]);
  });

  it("accepts LF, CR and CRLF line ends and joins multi-line data", () => {
    const p = new SseParser();
    const out = p.feed("data: a\rdata: b\r\ndata: c\n\n");
    expect(out).toHaveLength(1);
    expect(out[0]!.data).toBe("a\nb\nc");
    expect(out[0]!.event).toBe("message");
  });

  it("reads retry only when it is all digits, and ignores comments and unknown fields", () => {
    const p = new SseParser();
    const out = p.feed(': keep-alive\nretry: 500\nfoo: bar\nevent: reconnect\ndata: {}\n\nretry: 5s\ndata: y\n\n');
    expect(out[0]).toEqual({ event: "reconnect", data: "{}", id: null, retry: 500 });
    expect(out[1]!.retry).toBeNull();
  });

  it("drops a leading BOM, strips one space after the colon, and skips empty messages", () => {
    const p = new SseParser();
    const out = p.feed("\uFEFFdata:  two spaces\n\n\n\ndata\n\n");
    expect(out.map((m) => m.data)).toEqual([" two spaces", ""]);
  });

  it("handles a 64 KiB data line fed one small chunk at a time", () => {
    const p = new SseParser();
    const payload = "x".repeat(65536);
    const wire = `id: 9\nevent: data\ndata: ${payload}\n\n`;
    const out = [];
    for (let i = 0; i < wire.length; i += 1000) out.push(...p.feed(wire.slice(i, i + 1000)));
    expect(out).toHaveLength(1);
    expect(out[0]!.data.length).toBe(65536);
    expect(out[0]!.id).toBe("9");
  });
});
