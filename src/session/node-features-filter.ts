import { holdingNodeFeatures } from "../xmpp/login-offer.js";
import { MessageReader } from "../xmpp/message-reader.js";
import type { NodeLeg } from "./client-link.js";

/** A node's opening and first features are small; past this much without them, they pass as they are. */
const MAX_FIRST_FEATURES_BYTES = 64 * 1024;
const FEATURES_START = /<(?:stream:)?features\b/;
const FEATURES_END = /<\/(?:stream:)?features\s*>|^<(?:stream:)?features\b[^>]*\/>/;

/** What the node sent up to and with its first features, with those features rewritten (or untouched when they cannot be read). */
function rewrite(received: Buffer, opts: { secure: boolean; bindingHolds: boolean }): { data: Buffer; changed: boolean } {
  const untouched = { data: received, changed: false };
  const text = received.toString("utf8");
  const start = text.search(FEATURES_START);
  if (start < 0) return untouched;
  const end = FEATURES_END.exec(text.slice(start));
  if (end === null) return untouched;
  const stop = start + end.index + end[0].length;
  try {
    const features = new MessageReader(Number.MAX_SAFE_INTEGER, true).read(Buffer.from(text.slice(start, stop)));
    const after = holdingNodeFeatures(features, opts).toString();
    return { data: Buffer.from(text.slice(0, start) + after + text.slice(stop)), changed: after !== features.toString() };
  } catch {
    return untouched;
  }
}

/**
 * Phase open: the client logs in with the node's own features, so the first
 * ones the node sends are read whole and passed on with nothing that cannot
 * hold through the balancer (see holdingNodeFeatures); everything after them
 * is the relay's. `done` hears whether the node closed meanwhile, and which
 * features were changed (for the operator).
 */
export function passHoldingFeatures(leg: NodeLeg, opts: { secure: boolean; bindingHolds: boolean }, toClient: (data: Buffer) => void, done: (closed: boolean, changed: boolean) => void): void {
  const pieces: Buffer[] = [];
  let seen = "";
  let size = 0;
  leg.watch(
    (data) => {
      pieces.push(data);
      size += data.length;
      seen += data.toString("latin1");
      const start = seen.search(FEATURES_START);
      return size < MAX_FIRST_FEATURES_BYTES && (start < 0 || !FEATURES_END.test(seen.slice(start)));
    },
    () => {},
    (closed) => {
      const { data, changed } = rewrite(Buffer.concat(pieces), opts);
      if (data.length > 0) toClient(data);
      done(closed, changed);
    },
  );
}
