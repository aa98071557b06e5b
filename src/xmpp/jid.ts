/**
 * Bare JIDs for routing: `local@domain`, case-folded the way servers' nodeprep
 * does for ASCII so `Alice@` and `alice@` meet on one node. Not a full PRECIS
 * implementation: the balancer only needs a stable routing key.
 */

const FORBIDDEN_LOCAL = /["&'/:<>@\s\u0000-\u001f]/;

export function normalizeDomain(domain: string): string {
  return domain.trim().replace(/\.$/, "").toLowerCase();
}

/** Validates a localpart; returns it case-folded, or null when it cannot be a JID's localpart. */
export function normalizeLocal(local: string): string | null {
  if (local.length === 0 || Buffer.byteLength(local) > 1023 || FORBIDDEN_LOCAL.test(local)) return null;
  return local.normalize("NFKC").toLowerCase();
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
  if (local === null || domain.length === 0 || domain.includes("@")) return null;
  return { local, domain, bare: `${local}@${domain}` };
}
