import { Parser, type Element } from "@xmpp/xml";
import { StreamError } from "../errors.js";

/** What a StreamReader reports; returning true from a callback stops reading at that point. */
export interface StreamHandler {
  onStreamStart(header: Element, rawHeader: Buffer): boolean | void;
  onElement(element: Element): boolean | void;
  onStreamEnd(): void;
}

const GT = 0x3e; // '>'
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** @xmpp/xml's Parser, minus its complaint about whitespace before the root (after `<?xml ...?>`). */
class TolerantParser extends Parser {
  override onText(str: string): void {
    if (this.cursor === null && str.trim() === "") return;
    super.onText(str);
  }
}

/**
 * Reads the XML of one stream during the pre-auth dialogue, on either side of
 * the balancer. Bytes are fed to the parser in segments that end at a '>', so
 * at most one tag completes per segment and the reader knows the exact byte
 * where a decisive element ends: what follows is handed back untouched, to be
 * replayed to a node. Input the parser would mishandle is refused first:
 * `<!DOCTYPE>` (which @xmpp/xml silently swallows), comments, processing
 * instructions and unknown entities (on which it throws).
 */
export class StreamReader {
  private parser!: TolerantParser;
  private pending: Buffer | null = null;
  private headerSegments: Buffer[] | null = null;
  private headerBytes = 0;
  private stopped = false;
  private failure: StreamError | null = null;
  private started = false;
  /** Whether the first non-space byte of this stream has been seen (and was '<'). */
  private opened = false;

  constructor(
    private readonly handler: StreamHandler,
    private readonly maxHeaderBytes: number,
  ) {
    this.restart();
  }

  /** A new stream on the same transport (after STARTTLS or SASL): a fresh parser. */
  restart(): void {
    const parser = new TolerantParser();
    parser.on("start", (el: Element) => {
      this.started = true;
      const raw = Buffer.concat(this.headerSegments ?? []);
      this.headerSegments = null;
      if (this.handler.onStreamStart(el, raw) === true) this.stopped = true;
    });
    parser.on("element", (el: Element) => {
      if (this.handler.onElement(el) === true) this.stopped = true;
    });
    parser.on("end", () => {
      this.stopped = true;
      this.handler.onStreamEnd();
    });
    parser.on("error", (err: Error) => {
      this.failure ??= new StreamError("not-well-formed", err.message);
    });
    this.parser = parser;
    this.pending = null;
    this.headerSegments = [];
    this.headerBytes = 0;
    this.started = false;
    this.opened = false;
    this.stopped = false;
    this.failure = null;
  }

  /**
   * Feeds bytes. Returns the bytes left unread when a callback stopped the reader
   * (possibly empty), or undefined when everything was read. Throws StreamError.
   */
  push(chunk: Buffer): Buffer | undefined {
    if (!this.opened) this.checkOpening(chunk);
    const data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    this.stopped = false;
    let pos = 0;
    for (let gt = data.indexOf(GT, pos); gt !== -1; gt = data.indexOf(GT, pos)) {
      this.feed(data.subarray(pos, gt + 1));
      pos = gt + 1;
      if (this.stopped) return data.subarray(pos);
    }
    if (pos < data.length) {
      this.pending = data.subarray(pos);
      if (!this.started && this.headerBytes + this.pending.length > this.maxHeaderBytes) {
        throw new StreamError("policy-violation", "the stream header is too large");
      }
    }
    return undefined;
  }

  private feed(segment: Buffer): void {
    if (!this.started && this.headerSegments !== null) {
      this.headerBytes += segment.length;
      if (this.headerBytes > this.maxHeaderBytes) throw new StreamError("policy-violation", "the stream header is too large");
      this.headerSegments.push(segment);
    }
    let text: string;
    try {
      text = utf8.decode(segment);
    } catch {
      throw new StreamError("not-well-formed", "the input is not UTF-8");
    }
    this.refuseRestricted(text);
    try {
      this.parser.write(text);
    } catch (err) {
      if (err instanceof StreamError) throw err; // thrown by a handler callback
      const message = (err as Error).message;
      if (/entity/i.test(message)) throw new StreamError("restricted-xml", "entity references are not allowed", { cause: err });
      throw new StreamError("not-well-formed", message, { cause: err });
    }
    if (this.failure !== null) throw this.failure;
  }

  /**
   * A stream starts with '<' (after optional whitespace): anything else (an
   * HTTP request, a TLS ClientHello on a STARTTLS port, binary) is refused at
   * once instead of waiting for a '>' that may never come.
   */
  private checkOpening(chunk: Buffer): void {
    for (const byte of chunk) {
      if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) continue;
      if (byte !== 0x3c) throw new StreamError("not-well-formed", "this is not an XML stream");
      this.opened = true;
      return;
    }
  }

  /** Bytes received but not yet parsed (no '>' yet): they belong to whoever takes the transport over. */
  takePending(): Buffer {
    const rest = this.pending ?? Buffer.alloc(0);
    this.pending = null;
    return rest;
  }

  /** RFC 6120 11.1: no comments, processing instructions, DTDs or entity declarations. */
  private refuseRestricted(text: string): void {
    for (let i = text.indexOf("<!"); i !== -1; i = text.indexOf("<!", i + 2)) {
      if (!text.startsWith("<![CDATA[", i)) throw new StreamError("restricted-xml", "DTDs and comments are not allowed");
    }
    for (let i = text.indexOf("<?"); i !== -1; i = text.indexOf("<?", i + 2)) {
      // Only the XML declaration, before the stream header, is allowed.
      if (this.started || !/^<\?xml[\s?]/.test(text.slice(i, i + 6))) {
        throw new StreamError("restricted-xml", "processing instructions are not allowed");
      }
    }
  }
}
