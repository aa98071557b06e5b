/**
 * Reads what a node's SASL2 `<success/>` (XEP-0388) says about a FAST token
 * (XEP-0484: `<token xmlns='urn:xmpp:fast:0' expiry='…' token='…'/>`), from
 * the node's bytes as they pass to the client, without holding them back.
 * Only the expiry is kept; the token itself is the client's secret and is
 * never stored or logged.
 */
/** The longest a FAST token is remembered for, whatever expiry a node gives it. */
const MAX_TOKEN_MS = 366 * 24 * 3600 * 1000;

export class Sasl2SuccessReader {
  private text = "";

  /** What has not been read yet is at most this long: a success carries a few small elements. */
  private static readonly MAX_CHARS = 64 * 1024;

  /**
   * Takes the node's next bytes (the first call with those holding the
   * `<success`): true while the success element has not ended.
   */
  push(chunk: Buffer): boolean {
    let piece = chunk.toString("latin1");
    if (this.text === "") {
      const at = piece.lastIndexOf("<success");
      if (at > 0) piece = piece.slice(at);
    }
    this.text += piece;
    return !this.ended() && this.text.length < Sasl2SuccessReader.MAX_CHARS;
  }

  private ended(): boolean {
    return this.text.includes("</success>") || /^<success\b[^>]*\/>/.test(this.text);
  }

  /** When the token the success issued expires (ms since epoch, a year at most), or undefined: no token, or an expiry that is not a date. */
  tokenExpiry(): number | undefined {
    const end = this.text.indexOf("</success>");
    const success = end < 0 ? this.text : this.text.slice(0, end);
    const token = /<token\b[^>]*>/.exec(success)?.[0];
    if (token === undefined || !/\bxmlns=(['"])urn:xmpp:fast:0\1/.test(token)) return undefined;
    const expiry = /\bexpiry=(['"])([^'"]*)\1/.exec(token)?.[2];
    const at = expiry === undefined ? NaN : Date.parse(expiry);
    return Number.isFinite(at) ? Math.min(at, Date.now() + MAX_TOKEN_MS) : undefined;
  }
}
