import type { RecordWithTtl, SrvRecord } from "node:dns";
import net from "node:net";
import type { HostPort } from "../../cluster/address.js";
import type { MemberNode, NodeTable } from "../../cluster/node.js";
import type { TableListener } from "../../cluster/node-table-holder.js";
import type { Logger } from "../../log.js";
import type { Metrics } from "../../metrics.js";
import type { MembershipSource } from "../membership.js";
import { DiscoveryStatus } from "./discovery-status.js";
import { expandExternal, type DnsDiscovery, type DnsNodeOptions, type SrvDiscovery } from "./discovery-url.js";

/** The part of node:dns's promises Resolver a DNS source uses (a test may give its own). */
export interface DnsResolver {
  resolve4(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolve6(hostname: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolveSrv(hostname: string): Promise<SrvRecord[]>;
}

export interface DnsSourceOptions {
  resolver: DnsResolver;
  /** Re-resolution never sooner than this (and SRV, whose TTL node:dns does not give, at this pace). */
  minIntervalMs: number;
  /** …and never later than this, whatever the TTL; also the longest retry pause while the resolver fails. */
  maxIntervalMs: number;
  metrics: Metrics;
  log: Logger;
  /**
   * The node table, read for SRV priorities: the records of the lowest
   * priority are the nodes; the next priority joins while none of those is
   * up (all down or drained), as RFC 2782 tells a client to try the next
   * priority when it cannot reach the lowest.
   */
  table?: { readonly table: NodeTable; subscribe(listener: TableListener): () => void };
}

/**
 * The weight a node of SRV weight 0 gets: node weights must be positive, and
 * RFC 2782 gives weight 0 "a very small chance" beside records of weight > 0.
 */
export const SRV_ZERO_WEIGHT = 0.01;

/** c-ares: NOERROR without records of that type, and NXDOMAIN. Anything else is a resolver failure. */
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND"]);

/** The name exists in no record of the asked type: the last known list stays, as for a failure. */
class EmptyAnswer extends Error {}

type RecordType = "A" | "AAAA";

/** One record type's answer for a name: its records, sorted (none for NOERROR without records, or NXDOMAIN), or the resolver's failure. */
type TypeAnswer = { type: RecordType; records: RecordWithTtl[]; error?: undefined } | { type: RecordType; records?: undefined; error: NodeJS.ErrnoException };

interface Answer {
  /** Nodes by SRV priority, lowest first (one group for A/AAAA). */
  groups: MemberNode[][];
  /** The shortest record TTL, in seconds; undefined when DNS gave none (SRV). */
  ttl: number | undefined;
}

function memberNode(options: DnsNodeOptions, id: string, internal: HostPort, externalHost: string, weight: number): MemberNode {
  const external = options.external === undefined ? internal : (expandExternal(options.external, externalHost, internal.port) ?? internal);
  const node: MemberNode = { id, internal, external, weight, domains: options.domains, draining: false, source: "dns" };
  if (options.zone !== undefined) node.zone = options.zone;
  if (options.proxy !== undefined) node.proxy = options.proxy;
  return node;
}

const hostId = (host: string, port: number): string => (net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);

/**
 * Nodes from DNS, re-resolved for as long as the balancer runs:
 * `dns://NAME:PORT` makes every A and AAAA record of NAME a node on PORT (id
 * ADDRESS:PORT); `dns+srv://NAME` makes every SRV record a node (id
 * TARGET:PORT, dialed at the target's address as the same resolver gives it,
 * weight from the record, the lowest priority only unless none of it is up).
 *
 * A/AAAA are re-resolved when the shortest TTL runs out, SRV every
 * `minIntervalMs` (node:dns gives no SRV TTL); both within the min and max
 * intervals. A failure, or an answer with no records, keeps the last known
 * list (never "no nodes" because DNS hiccupped) and is retried after the min
 * interval, doubling up to the max. A and AAAA are asked apart: when one
 * fails (a resolver refusing AAAA), the other's records still count.
 */
export class DnsSource implements MembershipSource {
  readonly name: string;
  readonly status: DiscoveryStatus;
  private readonly log: Logger;
  private onChange: ((nodes: MemberNode[]) => void) | undefined;
  private groups: MemberNode[][] | undefined;
  private emitted = "";
  /** How many priority groups are listed now (SRV fallback), for the log. */
  private activeGroups = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private failures = 0;
  private readonly zeroWeightSaid = new Set<string>();
  /** dns://: the last records of each type, kept for a type whose query fails while the other answers. */
  private readonly lastRecords = new Map<RecordType, RecordWithTtl[]>();
  /** Queries failing now, by "TYPE name": warned when one starts failing (or fails with another code), not at every attempt. */
  private readonly failingQueries = new Map<string, { name: string; code: string }>();
  private unsubscribe: (() => void) | undefined;
  private republishQueued = false;

  constructor(
    private readonly spec: DnsDiscovery | SrvDiscovery,
    private readonly options: DnsSourceOptions,
  ) {
    this.name = spec.text;
    this.log = options.log;
    this.status = new DiscoveryStatus(spec.text, options.metrics, options.log);
  }

  start(onChange: (nodes: MemberNode[]) => void): () => void {
    this.onChange = onChange;
    if (this.spec.kind === "dns+srv" && this.options.table !== undefined) {
      // Deferred: the membership swaps the table from inside this very callback's chain otherwise.
      this.unsubscribe = this.options.table.subscribe(() => {
        if (this.republishQueued) return;
        this.republishQueued = true;
        queueMicrotask(() => {
          this.republishQueued = false;
          this.publish();
        });
      });
    }
    void this.round();
    return () => this.stop();
  }

  /** Resolves again now (SIGHUP), whatever the TTL. */
  refresh(): void {
    void this.round();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    this.status.stop();
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    clearTimeout(this.timer);
    let delay: number;
    try {
      const answer = this.spec.kind === "dns" ? await this.resolveHost(this.spec) : await this.resolveSrv(this.spec);
      if (this.stopped) return;
      this.failures = 0;
      this.groups = answer.groups;
      delay = Math.min(this.options.maxIntervalMs, Math.max(this.options.minIntervalMs, (answer.ttl ?? 0) * 1000));
      this.publish();
      this.status.answered({ ttl: answer.ttl, nextInMs: delay });
      this.log.debug({ source: this.name, nodes: this.status.nodes.map((n) => n.id), ttl: answer.ttl, nextInMs: delay }, "discovery source resolved");
    } catch (err) {
      if (this.stopped) return;
      this.failures += 1;
      delay = Math.min(this.options.maxIntervalMs, this.options.minIntervalMs * 2 ** Math.min(this.failures - 1, 20));
      const e = err as NodeJS.ErrnoException;
      const fields = { reason: e.message, code: e.code, retryInMs: delay };
      this.status.failed(err instanceof EmptyAnswer ? "discovery source answered no nodes" : "discovery source failed", fields);
    } finally {
      this.running = false;
    }
    if (this.again) {
      this.again = false;
      void this.round();
      return;
    }
    this.timer = setTimeout(() => void this.round(), delay);
    this.timer.unref();
  }

  /** Hands the membership what the last answer says now: SRV priorities applied, sorted by id, only when it changed. */
  private publish(): void {
    if (this.stopped || this.groups === undefined) return;
    const table = this.options.table?.table;
    const usable = (id: string): boolean => {
      const node = table?.get(id);
      return node === undefined || node.state === "up" || node.state === "suspect";
    };
    const listed: MemberNode[] = [];
    let groups = 0;
    for (const group of this.groups) {
      listed.push(...group);
      groups += 1;
      if (table === undefined || group.some((n) => usable(n.id))) break;
    }
    if (this.groups.length > 1 && groups !== this.activeGroups) {
      if (groups > 1) this.log.warn({ source: this.name, priorities: groups }, "no node of the lowest SRV priority is up: the next priority takes users");
      else if (this.activeGroups > 1) this.log.info({ source: this.name }, "a node of the lowest SRV priority is up again: the other priorities take no new users");
    }
    this.activeGroups = groups;
    listed.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const text = JSON.stringify(listed);
    if (text === this.emitted) return;
    this.emitted = text;
    this.status.list(listed);
    this.onChange?.(listed);
  }

  /**
   * The A and the AAAA answer of `name`, in that order, asked side by side. A
   * type whose query fails gives its error, and the other's records still
   * count: a resolver that refuses or fails one type must not cost the nodes
   * the other names. Throws the failure when no query gave records (both
   * failed, or one failed and the other has none): nothing is known then.
   */
  private async addresses(name: string): Promise<TypeAnswer[]> {
    const ask = async (type: RecordType, query: () => Promise<RecordWithTtl[]>): Promise<TypeAnswer> => {
      try {
        return { type, records: [...(await query())].sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0)) };
      } catch (err) {
        const error = err as NodeJS.ErrnoException;
        return NO_RECORDS.has(error.code ?? "") ? { type, records: [] } : { type, error };
      }
    };
    const { resolver } = this.options;
    const answers = await Promise.all([ask("A", () => resolver.resolve4(name, { ttl: true })), ask("AAAA", () => resolver.resolve6(name, { ttl: true }))]);
    const answered = answers.some((a) => a.records !== undefined && a.records.length > 0);
    for (const answer of answers) {
      const key = `${answer.type} ${name}`;
      const was = this.failingQueries.get(key);
      if (answer.error === undefined) {
        if (was === undefined) continue;
        this.failingQueries.delete(key);
        this.log.info({ source: this.name, name, type: answer.type }, `DNS query for ${answer.type} records answers again`);
        continue;
      }
      // When nothing answered, the source's own warning (once per transition) says it; a query is named when the other still counts.
      if (!answered) continue;
      const code = answer.error.code ?? "unknown";
      if (was?.code !== code) {
        const other = answer.type === "A" ? "AAAA" : "A";
        this.log.warn({ source: this.name, name, type: answer.type, code, reason: answer.error.message }, `DNS query for ${answer.type} records failed: the ${other} records are used`);
      }
      this.failingQueries.set(key, { name, code });
    }
    const failed = answers.find((a) => a.error !== undefined);
    if (failed !== undefined && !answered) throw failed.error;
    return answers;
  }

  private async resolveHost(spec: DnsDiscovery): Promise<Answer> {
    const answers = await this.addresses(spec.host);
    const fresh = answers.flatMap((a) => a.records ?? []);
    if (fresh.length === 0) throw new EmptyAnswer(`no A or AAAA record for ${spec.host}`);
    const records = answers.flatMap((a) => {
      // A type whose query failed keeps its last records: a failure says nothing about them.
      if (a.records === undefined) return this.lastRecords.get(a.type) ?? [];
      this.lastRecords.set(a.type, a.records);
      return a.records;
    });
    const seen = new Set<string>();
    const nodes = records
      .filter((r) => !seen.has(r.address) && seen.add(r.address))
      .map((r) => memberNode(spec, hostId(r.address, spec.port), { host: r.address, port: spec.port }, r.address, spec.weight));
    return { groups: [nodes], ttl: Math.min(...fresh.map((r) => r.ttl)) };
  }

  private async resolveSrv(spec: SrvDiscovery): Promise<Answer> {
    let records: SrvRecord[];
    try {
      records = await this.options.resolver.resolveSrv(spec.name);
    } catch (err) {
      if (!NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
      records = [];
    }
    // RFC 2782: a target of "." says the service is not offered there.
    const usable = records.map((r) => ({ ...r, name: r.name.replace(/\.$/, "").toLowerCase() })).filter((r) => r.name !== "" && r.port > 0);
    if (usable.length === 0) throw new EmptyAnswer(`no SRV record for ${spec.name}`);

    // Each target is dialed at its address as this resolver gives it (a --dns-server may know names the system does not).
    const targets = [...new Set(usable.map((r) => r.name))];
    const addressOf = new Map<string, string>();
    await Promise.all(
      targets.map(async (target) => {
        if (net.isIP(target) !== 0) return void addressOf.set(target, target);
        const first = (await this.addresses(target)).find((a) => a.records !== undefined && a.records.length > 0)?.records?.[0];
        if (first !== undefined) addressOf.set(target, first.address);
        else this.log.debug({ source: this.name, target }, "SRV target has no A or AAAA record here: the node is dialed by name");
      }),
    );
    // Targets that left DNS: forget their failing queries, so they are not remembered for ever.
    for (const [key, query] of this.failingQueries) if (!targets.includes(query.name)) this.failingQueries.delete(key);

    const byPriority = new Map<number, MemberNode[]>();
    const ids = new Set<string>();
    for (const r of [...usable].sort((x, y) => x.priority - y.priority)) {
      const id = `${r.name}:${r.port}`;
      if (ids.has(id)) continue; // listed twice: its lowest priority counts
      ids.add(id);
      let weight = r.weight;
      if (weight === 0) {
        weight = SRV_ZERO_WEIGHT;
        if (!this.zeroWeightSaid.has(id)) {
          this.zeroWeightSaid.add(id);
          this.log.info({ source: this.name, node: id, weight }, "SRV weight 0: the node gets a very small weight (RFC 2782), not none");
        }
      }
      const node = memberNode(spec, id, { host: addressOf.get(r.name) ?? r.name, port: r.port }, r.name, weight);
      const group = byPriority.get(r.priority) ?? [];
      group.push(node);
      byPriority.set(r.priority, group);
    }
    return { groups: [...byPriority.entries()].sort(([a], [b]) => a - b).map(([, g]) => g), ttl: undefined };
  }
}
