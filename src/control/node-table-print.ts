import type { StoredNode } from "../store/store.js";
import { formatHostPort } from "../xmpp/see-other-host.js";

/** One line of `xmpp-lb node list` (and one object of its `--json`). */
export interface NodeListEntry {
  id: string;
  /** "static": only a drain flag in the store (a --node of the balancers, or an id no node has). */
  source: "registered" | "static";
  state: "up" | "draining";
  internal?: string;
  external?: string;
  zone?: string;
  weight?: number;
  domains?: readonly string[];
  /** Cluster-wide: open forwarded connections plus recent redirects, over every live balancer. */
  sessions: number;
  /** ms since the epoch (Redis's clock). */
  lastHeartbeat?: number;
}

/** The registered nodes, then the drained ids that are not registered; each with its cluster-wide load. */
export function nodeListEntries(registered: readonly StoredNode[], drained: readonly string[], loads: ReadonlyMap<string, number>): NodeListEntry[] {
  const entries = registered.map(
    (node): NodeListEntry => ({
      id: node.id,
      source: "registered",
      state: node.draining ? "draining" : "up",
      internal: formatHostPort(node.internal.host, node.internal.port),
      external: formatHostPort(node.external.host, node.external.port),
      ...(node.zone === undefined ? {} : { zone: node.zone }),
      weight: node.weight,
      domains: node.domains,
      sessions: loads.get(node.id) ?? 0,
      ...(node.lastHeartbeat === undefined ? {} : { lastHeartbeat: node.lastHeartbeat }),
    }),
  );
  const registeredIds = new Set(registered.map((n) => n.id));
  for (const id of drained) {
    if (!registeredIds.has(id)) entries.push({ id, source: "static", state: "draining", sessions: loads.get(id) ?? 0 });
  }
  return entries;
}

const COLUMNS = ["id", "internal", "external", "state", "zone", "weight", "sessions", "last heartbeat"];

/** A plain-text table, columns padded to their widest cell; `-` for what a node does not have. */
export function formatNodeTable(entries: readonly NodeListEntry[], now: number = Date.now()): string {
  if (entries.length === 0) return "no node is registered or drained in the store\n";
  const rows = entries.map((e) => [
    e.id,
    e.internal ?? "-",
    e.external ?? "-",
    e.state,
    e.zone ?? "-",
    e.weight === undefined ? "-" : String(e.weight),
    String(e.sessions),
    e.source === "static" ? "static" : e.lastHeartbeat === undefined ? "-" : formatAge(now - e.lastHeartbeat),
  ]);
  const widths = COLUMNS.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd();
  return [COLUMNS, ...rows].map(line).join("\n") + "\n";
}

/** `3s ago`, `4m ago`, `2h ago`; a clock behind Redis's reads as `0s ago`. */
function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}
