/**
 * Bare JIDs for routing: `local@domain`, prepared as the XMPP servers behind
 * the balancer prepare them (Nodeprep for the localpart, Nameprep for the
 * domain, as Prosody's jid.prep does), so that every spelling of one account
 * (`Straße`, `STRASSE`, `strasse`) gives one routing key and one node.
 */

import { nameprep, nodeprep } from "./stringprep.js";

/** RFC 6122 section 2.1: each part of a JID is 1 to 1023 bytes. */
const MAX_PART_BYTES = 1023;

function fitsPart(part: string): boolean {
  return part.length > 0 && Buffer.byteLength(part) <= MAX_PART_BYTES;
}

/**
 * Drops the root label's dot, then applies Nameprep to the whole name, as
 * Prosody does (its bidi check sees the whole name, not label by label).
 * Domains also come from configuration and stream headers, which need a key
 * even when Nameprep refuses them (the node will refuse them itself), so such
 * a domain is only lower-cased.
 */
export function normalizeDomain(domain: string): string {
  const name = domain.trim().replace(/\.$/, "");
  return nameprep(name) ?? name.toLowerCase();
}

/** Prepares a localpart with Nodeprep; null when it cannot be a JID's localpart. */
export function normalizeLocal(local: string): string | null {
  if (!fitsPart(local)) return null;
  const prepared = nodeprep(local);
  return prepared !== null && fitsPart(prepared) ? prepared : null;
}

export function bareJid(local: string, domain: string): string | null {
  const l = normalizeLocal(local);
  return l === null ? null : `${l}@${normalizeDomain(domain)}`;
}

/** Parses `local@domain[/resource]`; returns the bare JID, or null when it has no localpart. */
export function parseBareJid(jid: string): { local: string; domain: string; bare: string } | null {
  const slash = jid.indexOf("/");
  const bareText = slash === -1 ? jid : jid.slice(0, slash);
  const at = bareText.indexOf("@");
  if (at <= 0 || at === bareText.length - 1) return null;
  const local = normalizeLocal(bareText.slice(0, at));
  const domain = normalizeDomain(bareText.slice(at + 1));
  if (local === null || !fitsPart(domain) || domain.includes("@")) return null;
  return { local, domain, bare: `${local}@${domain}` };
}
