import type { Element } from "@xmpp/xml";
import { StreamError } from "../errors.js";
import { StreamReader } from "./stream-reader.js";

/** Stands in for the stream header RFC 7395 does without, so every message parses as a top-level element. */
const SYNTHETIC_ROOT = Buffer.from("<framed-stream>");

/**
 * Reads XMPP-over-WebSocket messages (RFC 7395 3.3.3): each must be exactly
 * one complete top-level element. The stream reader's checks (no DTDs,
 * comments, children before login, control characters) apply unchanged.
 */
export class MessageReader {
  private readonly reader: StreamReader;

  /** `childElements`: false for a client before login (nothing it sends then has children), true for a node's messages. */
  constructor(maxTagBytes: number, childElements = false) {
    this.reader = new StreamReader({ maxHeaderBytes: SYNTHETIC_ROOT.length, maxTagBytes, childElements });
    this.reader.push(SYNTHETIC_ROOT);
    this.reader.next();
  }

  /** The one element a message carries. Throws StreamError (`not-well-formed`, or the reader's own conditions). */
  read(message: Buffer): Element {
    this.reader.push(message);
    const event = this.reader.next();
    const more = this.reader.next();
    const rest = this.reader.takeRest().toString("utf8");
    if (event === null || event.kind !== "element" || more !== null || rest.trim() !== "") {
      throw new StreamError("not-well-formed", "a WebSocket message must carry exactly one complete XML element");
    }
    return event.element;
  }
}
