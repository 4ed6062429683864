/**
 * An incremental Server-Sent-Events parser (the WHATWG "event stream" rules), fed text chunks
 * as they arrive from a fetch body. Pure: no I/O, no DOM.
 */

export interface SseMessage {
  /** The `event:` field, "message" when the server sent none. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The `id:` field of this message, or null. */
  id: string | null;
  /** The `retry:` field in ms when this message carried a valid one, else null. */
  retry: number | null;
}

export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private id: string | null = null;
  private retry: number | null = null;
  private hasFields = false;
  private started = false;
  /** The last event id seen on the stream (it carries over messages, as in EventSource). */
  lastEventId: string | null = null;

  /** Parse a chunk of decoded text; returns every message it completed. */
  feed(chunk: string): SseMessage[] {
    let text = this.buffer + chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const out: SseMessage[] = [];
    let start = 0;
    for (;;) {
      const cr = text.indexOf("\r", start);
      const lf = text.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end: number;
      let next: number;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A lone CR ends a line, and so does CRLF; a CR at the very end may be half of a CRLF.
        if (cr === text.length - 1) break;
        end = cr;
        next = text[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      const message = this.line(text.slice(start, end));
      if (message) out.push(message);
      start = next;
    }
    this.buffer = text.slice(start);
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        return null; // unknown fields are ignored
    }
    this.hasFields = true;
    return null;
  }

  private dispatch(): SseMessage | null {
    if (!this.hasFields) return null;
    if (this.id !== null) this.lastEventId = this.id;
    const message: SseMessage = {
      event: this.event || "message",
      data: this.data.join("\n"),
      id: this.id,
      retry: this.retry,
    };
    this.event = "";
    this.data = [];
    this.id = null;
    this.retry = null;
    this.hasFields = false;
    return message;
  }
}
