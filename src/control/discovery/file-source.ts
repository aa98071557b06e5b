import { watch, type FSWatcher } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { MemberNode } from "../../cluster/node.js";
import { parseNode } from "../../node-keys.js";
import type { Logger } from "../../log.js";
import type { Metrics } from "../../metrics.js";
import type { MembershipSource } from "../membership.js";
import { DiscoveryStatus } from "./discovery-status.js";
import type { FileDiscovery } from "./discovery-url.js";
import { lineColumn, scanJson } from "./json-position.js";

export interface FileSourceOptions {
  /** How often the file is stat()ed besides the directory watch (a safety net: watches miss events on some file systems). */
  pollMs: number;
  metrics: Metrics;
  log: Logger;
}

/** A burst of events (truncate, write, rename) is read once, this long after the last. */
const DEBOUNCE_MS = 100;

export type NodesFile = { ok: true; nodes: MemberNode[] } | { ok: false; problem: string; fields: Record<string, unknown> };

/**
 * Reads a nodes file: a JSON array whose items are `--node` strings or
 * objects with the same keys. A mistake is said with its place: the line and
 * column where the JSON goes wrong, or the item (and its line) that is not a
 * node.
 */
export function parseNodesFile(raw: string): NodesFile {
  const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw; // a BOM, as some editors write
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const scan = scanJson(text);
    if (scan.ok) return { ok: false, problem: "not valid JSON", fields: { error: (err as Error).message } };
    const { line, column } = lineColumn(text, scan.offset);
    return { ok: false, problem: `not valid JSON at line ${line}, column ${column} (expected ${scan.expected})`, fields: { line, column, error: (err as Error).message } };
  }
  if (!Array.isArray(data)) return { ok: false, problem: "not a JSON array (of --node strings or objects)", fields: { found: data === null ? "null" : typeof data } };
  const scan = scanJson(text);
  const nodes: MemberNode[] = [];
  const ids = new Set<string>();
  for (const [index, item] of data.entries()) {
    const offset = scan.ok ? scan.items[index] : undefined;
    const where: { line?: number; column?: number } = offset === undefined ? {} : lineColumn(text, offset);
    const at = offset === undefined ? `item ${index + 1}` : `item ${index + 1} (line ${where.line}, column ${where.column})`;
    if (typeof item !== "string" && (item === null || typeof item !== "object" || Array.isArray(item))) {
      return { ok: false, problem: `${at} is neither a --node string nor an object`, fields: { item: index + 1, ...where } };
    }
    let spec;
    try {
      spec = parseNode(item as string | Record<string, unknown>);
    } catch (err) {
      return { ok: false, problem: `${at} is not a node: ${(err as Error).message}`, fields: { item: index + 1, ...where, error: (err as Error).message } };
    }
    if (ids.has(spec.id)) return { ok: false, problem: `${at}: id '${spec.id}' is listed twice`, fields: { item: index + 1, ...where } };
    ids.add(spec.id);
    nodes.push({ ...spec, draining: false, source: "file" });
  }
  return { ok: true, nodes };
}

/**
 * Nodes from a file that a configuration manager writes. Re-read when it
 * changes (a watch on its directory, so a rename over it counts; debounced),
 * when a periodic stat() finds it changed, and on refresh() (SIGHUP). A file
 * that is missing, unreadable or wrong keeps the last good list, with a
 * warning saying where it is wrong.
 */
export class FileSource implements MembershipSource {
  readonly name: string;
  readonly status: DiscoveryStatus;
  private readonly log: Logger;
  private onChange: ((nodes: MemberNode[]) => void) | undefined;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  /** The stat of the file as last read ("missing" when it was not there). */
  private readStat: string | undefined;
  private emitted = "";
  private running = false;
  private again = false;
  private stopped = false;

  constructor(
    private readonly spec: FileDiscovery,
    private readonly options: FileSourceOptions,
  ) {
    this.name = spec.text;
    this.log = options.log;
    this.status = new DiscoveryStatus(spec.text, options.metrics, options.log);
  }

  start(onChange: (nodes: MemberNode[]) => void): () => void {
    this.onChange = onChange;
    void this.read();
    this.watchDirectory();
    this.poll = setInterval(() => void this.check(), this.options.pollMs);
    this.poll.unref();
    return () => this.stop();
  }

  /** Reads the file again now (SIGHUP), changed or not. */
  refresh(): void {
    this.readStat = undefined;
    void this.read();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.poll);
    clearTimeout(this.debounce);
    this.watcher?.close();
    this.status.stop();
  }

  private watchDirectory(): void {
    if (this.watcher !== undefined || this.stopped) return;
    const base = path.basename(this.spec.path);
    try {
      this.watcher = watch(path.dirname(this.spec.path), { persistent: false }, (_event, filename) => {
        if (filename !== null && filename !== base) return;
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => void this.check(), DEBOUNCE_MS);
        this.debounce.unref();
      });
      this.watcher.on("error", (err) => {
        this.log.debug({ source: this.name, err: err.message }, "the nodes file's directory cannot be watched now: the periodic check remains");
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      // The directory may not exist yet: the periodic check tries again.
      this.log.debug({ source: this.name, err: (err as Error).message }, "cannot watch the nodes file's directory: the periodic check remains");
    }
  }

  private async fileStat(): Promise<string> {
    try {
      const s = await stat(this.spec.path);
      return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    } catch {
      return "missing";
    }
  }

  /** Reads the file if it changed since it was last read. */
  private async check(): Promise<void> {
    if (this.stopped) return;
    this.watchDirectory();
    if ((await this.fileStat()) !== this.readStat) await this.read();
  }

  private async read(): Promise<void> {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      // The stat before the read: a write during the read is seen by the next check.
      const before = await this.fileStat();
      let text: string;
      try {
        text = await readFile(this.spec.path, "utf8");
      } catch (err) {
        this.readStat = before;
        if (!this.stopped) this.status.failed("cannot read the nodes file", { file: this.spec.path, reason: (err as Error).message }, true);
        return;
      }
      this.readStat = before;
      if (this.stopped) return;
      const parsed = parseNodesFile(text);
      if (!parsed.ok) {
        this.status.failed(`the nodes file is wrong: ${parsed.problem}`, { file: this.spec.path, ...parsed.fields }, true);
        return;
      }
      const json = JSON.stringify(parsed.nodes);
      if (json !== this.emitted) {
        this.emitted = json;
        this.status.list(parsed.nodes);
        this.onChange?.(parsed.nodes);
      }
      this.status.answered({ file: this.spec.path });
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        void this.read();
      }
    }
  }
}
