import { Parser, type Element } from "@xmpp/xml";
import { StreamError } from "../errors.js";
import { NS_SASL2, STANZA_NAMES } from "./namespaces.js";

/** What a StreamReader yields, one at a time. */
export type StreamEvent =
  | { kind: "start"; element: Element; /** The header's bytes as received (from the XML declaration on). */ raw: Buffer }
  | { kind: "element"; element: Element }
  | { kind: "end" };

export interface StreamReaderLimits {
  /** Largest stream header (with its XML declaration). */
  maxHeaderBytes: number;
  /** Largest run of bytes without a '>' (one tag, or text and a tag) after the header. */
  maxTagBytes: number;
  /**
   * Whether top-level elements may have child elements. Before login nothing a
   * client sends has any (`<starttls/>`, `<auth>`, `<response>`, `<abort/>`),
   * so the client side refuses them at once: the parser would otherwise keep a
   * whole tree in memory for every unclosed element. The one exception is
   * SASL2's `<authenticate/>` (XEP-0388), which carries its initial response,
   * user agent and inline requests: a small, shallow tree.
   */
  childElements: boolean;
}

const GT = 0x3e; // '>'
/** `<authenticate/>` > `<bind/>` > `<enable/>` is as deep as a client's modern login goes (XEP-0388, XEP-0386). */
const MAX_AUTHENTICATE_DEPTH = 4;
/** Elements in one `<authenticate/>`: a user agent, a handful of inline requests and their options. */
const MAX_AUTHENTICATE_ELEMENTS = 64;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** @xmpp/xml's Parser, minus its complaint about whitespace before the root, and optionally flat. */
class PreAuthParser extends Parser {
  /** Elements inside the current top-level `<authenticate/>`. */
  private authenticateElements = 0;

  constructor(private readonly childElements: boolean) {
    super();
  }

  override onStartElement(name: string, attrs: Record<string, string>): void {
    const parent = this.cursor;
    if (!this.childElements && parent !== null && parent !== this.root && !this.insideAuthenticate(name)) {
      // A stanza is refused for what it is (RFC 6120 4.9.3.12: no stanzas before login), anything else for its size.
      if (STANZA_NAMES.has(parent.name)) throw new StreamError("not-authorized", "stanzas are not allowed before login");
      throw new StreamError("policy-violation", `<${name}/> inside <${parent.name}/>: no element before login has children`);
    }
    if (parent === this.root) this.authenticateElements = 0;
    super.onStartElement(name, attrs);
  }

  /** Whether a child named `name` may start here: inside a SASL2 `<authenticate/>`, within its bounds. */
  private insideAuthenticate(name: string): boolean {
    let depth = 1;
    let top = this.cursor!;
    while (top.parent !== null && top.parent !== this.root && top.parent !== undefined) {
      top = top.parent as Element;
      depth += 1;
    }
    if (top.name !== "authenticate" || top.attrs.xmlns !== NS_SASL2) return false;
    if (depth >= MAX_AUTHENTICATE_DEPTH || ++this.authenticateElements > MAX_AUTHENTICATE_ELEMENTS) {
      throw new StreamError("policy-violation", `<${name}/>: the <authenticate/> is too deep or too large`);
    }
    return true;
  }

  override onText(str: string): void {
    if (this.cursor === null && str.trim() === "") return;
    // RFC 6120 4.3.2: between top-level elements only whitespace (CDATA and character references included).
    if (this.atStreamLevel() && str.trim() !== "") throw new StreamError("bad-format", "text is not allowed between elements");
    super.onText(str);
  }

  /** Inside the stream header's element, between top-level elements. */
  atStreamLevel(): boolean {
    return this.root !== null && this.cursor === this.root;
  }
}

/**
 * Reads the XML of one stream during the pre-auth dialogue, on either side of
 * the balancer. Its user pushes bytes and pulls events. Bytes are parsed in
 * segments that end at a '>', so at most one tag completes per segment and the
 * reader knows the exact byte where a decisive element ends: `takeRest()`
 * hands back what follows, untouched, to be replayed to a node.
 *
 * Input the parser would mishandle is refused first: `<!DOCTYPE>` (which
 * @xmpp/xml silently swallows), comments, processing instructions, unknown
 * entities (on which it throws), and control characters XML forbids (which
 * would otherwise wait for a '>' that never comes). Buffered bytes are scanned
 * once, so input dripped a byte at a time costs linear time.
 */
export class StreamReader {
  private parser!: PreAuthParser;
  private buffer = Buffer.alloc(0);
  /** buffer[readPos, length) is unparsed; buffer[readPos, scanPos) is known to hold no '>'. */
  private length = 0;
  /** buffer[readPos, spaceUntil) is known to be whitespace (when spaceUntil > readPos). */
  private spaceUntil = 0;
  private readPos = 0;
  private scanPos = 0;
  private readonly events: StreamEvent[] = [];
  private headerSegments: Buffer[] = [];
  private headerBytes = 0;
  private started = false;
  /** Whether the first non-space byte of this stream has been seen (and was '<'). */
  private opened = false;

  constructor(private readonly limits: StreamReaderLimits) {
    this.restart();
  }

  /** A new stream on the same transport (after STARTTLS or SASL): a fresh parser, nothing buffered. */
  restart(): void {
    const parser = new PreAuthParser(this.limits.childElements);
    parser.on("start", (element: Element) => {
      this.started = true;
      this.events.push({ kind: "start", element, raw: Buffer.concat(this.headerSegments) });
      this.headerSegments = [];
    });
    parser.on("element", (element: Element) => void this.events.push({ kind: "element", element }));
    parser.on("end", () => void this.events.push({ kind: "end" }));
    parser.on("error", (err: Error) => {
      throw new StreamError("not-well-formed", err.message);
    });
    this.parser = parser;
    this.buffer = Buffer.alloc(0);
    this.length = this.readPos = this.scanPos = this.spaceUntil = 0;
    this.events.length = 0;
    this.headerSegments = [];
    this.headerBytes = 0;
    this.started = false;
    this.opened = false;
  }

  /** Buffers bytes for next(). Throws StreamError for bytes no XML stream may carry. */
  push(chunk: Buffer): void {
    if (!this.opened) this.checkOpening(chunk);
    refuseControlCharacters(chunk);
    this.append(chunk);
  }

  /** The next event, or null until more bytes arrive. Throws StreamError. */
  next(): StreamEvent | null {
    for (;;) {
      const queued = this.events.shift();
      if (queued !== undefined) return queued;
      const gt = this.buffer.subarray(0, this.length).indexOf(GT, this.scanPos);
      if (gt === -1) {
        this.scanPos = this.length;
        this.checkUnparsed();
        this.refuseStreamLevelText();
        return null;
      }
      const segment = this.buffer.subarray(this.readPos, gt + 1);
      this.readPos = this.scanPos = gt + 1;
      this.feed(segment);
    }
  }

  /** The bytes received but not yet parsed: they belong to whoever takes the transport over. */
  takeRest(): Buffer {
    const rest = Buffer.from(this.buffer.subarray(this.readPos, this.length));
    this.readPos = this.scanPos = this.length;
    return rest;
  }

  private append(chunk: Buffer): void {
    const unparsed = this.length - this.readPos;
    if (this.length + chunk.length > this.buffer.length) {
      // Grow (doubling) and drop what was parsed, so appending stays linear overall.
      const grown = Buffer.allocUnsafe(Math.max(256, 2 * (unparsed + chunk.length)));
      this.buffer.copy(grown, 0, this.readPos, this.length);
      this.buffer = grown;
      this.scanPos -= this.readPos;
      this.spaceUntil = Math.max(0, this.spaceUntil - this.readPos);
      this.readPos = 0;
      this.length = unparsed;
    }
    chunk.copy(this.buffer, this.length);
    this.length += chunk.length;
  }

  /**
   * Text between top-level elements would otherwise wait for a '>' that may
   * never come: the first byte that is neither whitespace nor '<' is refused
   * at once (RFC 6120 4.3.2: only elements and whitespace there).
   */
  private refuseStreamLevelText(): void {
    if (!this.started || !this.parser.atStreamLevel()) return;
    // Whitespace already seen is not scanned again: dripped whitespace costs linear time.
    for (let i = Math.max(this.spaceUntil, this.readPos); i < this.length; i++) {
      const byte = this.buffer[i]!;
      if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) {
        this.spaceUntil = i + 1;
        continue;
      }
      if (byte !== 0x3c) throw new StreamError("bad-format", "text is not allowed between elements");
      return;
    }
  }

  private checkUnparsed(): void {
    const unparsed = this.length - this.readPos;
    if (!this.started) {
      if (this.headerBytes + unparsed > this.limits.maxHeaderBytes) throw new StreamError("policy-violation", "the stream header is too large");
    } else if (unparsed > this.limits.maxTagBytes) {
      throw new StreamError("policy-violation", "an element is too large");
    }
  }

  private feed(segment: Buffer): void {
    if (!this.started) {
      this.headerBytes += segment.length;
      if (this.headerBytes > this.limits.maxHeaderBytes) throw new StreamError("policy-violation", "the stream header is too large");
      this.headerSegments.push(Buffer.from(segment));
    } else if (segment.length > this.limits.maxTagBytes) {
      throw new StreamError("policy-violation", "an element is too large");
    }
    // A segment ends at '>', which no UTF-8 sequence contains: it decodes whole or not at all.
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
      if (err instanceof StreamError) throw err;
      const message = (err as Error).message;
      if (/entity/i.test(message)) throw new StreamError("restricted-xml", "entity references are not allowed", { cause: err });
      throw new StreamError("not-well-formed", message, { cause: err });
    }
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

/** XML 1.0 allows no C0 control character but tab, line feed and carriage return. */
function refuseControlCharacters(chunk: Buffer): void {
  for (const byte of chunk) {
    if (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) {
      throw new StreamError("not-well-formed", "the input carries a character XML forbids");
    }
  }
}
