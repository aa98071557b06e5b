/**
 * Finds the node's SASL verdict in the bytes it sends a forwarded client
 * during the login (RFC 6120 6.4.6, 6.5): `<success` or `<failure`, without
 * parsing. Before the verdict a node sends only its features and SASL
 * challenges (base64 text), so the first of these tags is the verdict. A
 * stream error or close before a success means the login did not happen.
 */
export type SaslOutcome = "success" | "failure";

const MARKERS: ReadonlyArray<[string, SaslOutcome]> = [
  ["<success", "success"],
  ["<failure", "failure"],
];
/** A marker split across two reads is found with this much of the previous read kept. */
const KEEP = "<failure".length - 1;

export class SaslOutcomeScanner {
  private tail = "";

  /** The last verdict in `chunk` (with what came before it), or null. */
  push(chunk: Buffer): SaslOutcome | null {
    // latin1 maps bytes one to one: ASCII markers are found whatever the encoding around them.
    const text = this.tail + chunk.toString("latin1");
    this.tail = text.slice(-KEEP);
    let found: SaslOutcome | null = null;
    let at = -1;
    for (const [marker, outcome] of MARKERS) {
      const i = text.lastIndexOf(marker);
      if (i > at) {
        at = i;
        found = outcome;
      }
    }
    return found;
  }
}
