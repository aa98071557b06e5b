// Test fixture: a throwaway dnsmasq (Debian's dnsmasq package, the binary
// only: any system instance the package started is not used or touched) on
// 127.0.0.1:<free port>, answering only from its own files:
//
//   A records   from an --addn-hosts file, re-read on SIGHUP (setHosts());
//   SRV records from --srv-host lines in a conf file, which dnsmasq reads only
//               at start: setSrv() restarts it on the same port.
//
// --local-ttl=1 gives local answers a TTL of 1 s; --local=/test/ makes
// unknown *.test names NXDOMAIN instead of "no upstream" refusals. The process
// is the test's own, killed when the test process exits (children.ts).
//
// `refuse` names get --server=/NAME/# instead: their hosts-file records are
// answered, and a query of a type the file has none of for them goes to the
// (absent) upstream servers, which dnsmasq answers REFUSED. So an A-only name
// has its AAAA refused, an AAAA-only name its A, as by a real resolver.

import { hookExit, tracked, liveDirs } from "./children.js";
import { freePort, sleep } from "./wait.js";
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { promises as dns } from "node:dns";
import os from "node:os";
import path from "node:path";

const DNSMASQ = process.env.DNSMASQ_BIN ?? "/usr/sbin/dnsmasq";
const HOST = "127.0.0.1";

export interface SrvEntry {
  /** The SRV name, e.g. _xmpp-client._tcp.disco.test */
  service: string;
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

export interface Dnsmasq {
  host: string;
  port: number;
  /** `127.0.0.1:PORT`, as --dns-server takes it. */
  server: string;
  /** dnsmasq's own log (queries included). */
  logFile: string;
  /** Rewrites the hosts file (address, name pairs), sends SIGHUP, and waits until the answers say so. */
  setHosts(entries: Array<[string, string]>): Promise<void>;
  /** Rewrites the SRV records and restarts dnsmasq on the same port (it reads --srv-host only at start). */
  setSrv(entries: SrvEntry[]): Promise<void>;
  /** Sends a signal (default SIGKILL) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port, with the current files. */
  start(): Promise<void>;
  /** Stops it and removes its temp dir. */
  stop(): Promise<void>;
  /** A resolver pointed at it. */
  resolver(): dns.Resolver;
}

class Server implements Dnsmasq {
  readonly host = HOST;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly logFile: string;
  private readonly hostsFile: string;
  private readonly confFile: string;
  private hosts: Array<[string, string]> = [];

  constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly refuse: readonly string[] = [],
  ) {
    this.logFile = path.join(dir, "dnsmasq.log");
    this.hostsFile = path.join(dir, "hosts");
    this.confFile = path.join(dir, "srv.conf");
    writeFileSync(this.hostsFile, "");
    writeFileSync(this.confFile, "");
  }

  get server(): string {
    return `${this.host}:${this.port}`;
  }

  resolver(): dns.Resolver {
    const r = new dns.Resolver({ timeout: 500, tries: 1 });
    r.setServers([this.server]);
    return r;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error("dnsmasq is already running");
    const out = openSync(this.logFile, "a");
    const args = [
      `--port=${this.port}`,
      `--listen-address=${HOST}`,
      "--bind-interfaces",
      // Foreground: no fork, no pid file, no change of user (so it can re-read the temp dir's files).
      "--no-daemon",
      "--no-resolv",
      "--no-hosts",
      "--conf-file=/dev/null",
      `--addn-hosts=${this.hostsFile}`,
      // dnsmasq reads --srv-host from a conf file at start only.
      `--conf-file=${this.confFile}`,
      "--local-ttl=1",
      "--local=/test/",
      ...this.refuse.map((name) => `--server=/${name}/#`),
      "--log-queries",
      "--log-facility=-",
    ];
    const child = spawn(DNSMASQ, args, { cwd: this.dir, stdio: ["ignore", out, out] });
    closeSync(out);
    this.child = child;
    let gone = false;
    this.exited = tracked(child).then(() => {
      gone = true;
      if (this.child === child) this.child = null;
    });
    child.once("error", () => {});
    const r = this.resolver();
    const deadline = Date.now() + 5000;
    for (;;) {
      if (gone) break;
      try {
        await r.resolve4("dnsmasq-ready.test");
        return;
      } catch (err) {
        // NXDOMAIN or NODATA: it answers.
        if (["ENOTFOUND", "ENODATA"].includes((err as NodeJS.ErrnoException).code ?? "")) return;
      }
      if (Date.now() > deadline) break;
      await sleep(50);
    }
    await this.kill("SIGKILL");
    let log = "";
    try {
      log = readFileSync(this.logFile, "utf8").split("\n").slice(-15).join("\n");
    } catch {}
    throw new Error(`dnsmasq on ${this.server} ${gone ? "exited" : "never answered"}:\n${log}`);
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.child?.kill(signal);
    await this.exited;
  }

  async setHosts(entries: Array<[string, string]>): Promise<void> {
    const before = new Set(this.hosts.map(([, name]) => name));
    this.hosts = entries;
    writeFileSync(this.hostsFile, entries.map(([address, name]) => `${address} ${name}\n`).join(""));
    this.child?.kill("SIGHUP");
    if (!this.child) return;
    // Wait until every name answers with its new addresses, and names no longer listed are gone.
    const wanted = new Map<string, string[]>();
    for (const [address, name] of entries) wanted.set(name, [...(wanted.get(name) ?? []), address].sort());
    const r = this.resolver();
    const answers = async (name: string): Promise<string[]> => {
      try {
        return (await r.resolve4(name)).sort();
      } catch {
        return [];
      }
    };
    const deadline = Date.now() + 5000;
    for (;;) {
      let ok = true;
      for (const [name, addresses] of wanted) if (JSON.stringify(await answers(name)) !== JSON.stringify(addresses)) ok = false;
      for (const name of before) if (!wanted.has(name) && (await answers(name)).length > 0) ok = false;
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`dnsmasq did not take the new hosts file: ${JSON.stringify(entries)}`);
      await sleep(50);
    }
  }

  async setSrv(entries: SrvEntry[]): Promise<void> {
    writeFileSync(this.confFile, entries.map((e) => `srv-host=${e.service},${e.target},${e.port},${e.priority ?? 0},${e.weight ?? 0}\n`).join(""));
    if (!this.child) return;
    await this.kill("SIGTERM");
    await this.start();
  }

  async stop(): Promise<void> {
    await this.kill("SIGTERM");
    rmSync(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }
}

/** Starts dnsmasq on a free loopback port with the given A and SRV records. */
export async function startDnsmasq(opts: { hosts?: Array<[string, string]>; srv?: SrvEntry[]; refuse?: string[] } = {}): Promise<Dnsmasq> {
  if (!existsSync(DNSMASQ)) throw new Error(`${DNSMASQ} not found: apt-get install dnsmasq (see .ci/run), or set DNSMASQ_BIN`);
  hookExit();
  const dir = mkdtempSync(path.join(os.tmpdir(), "xmpp-lb-dnsmasq-"));
  // Readable by any user, should a dnsmasq build insist on dropping privileges.
  chmodSync(dir, 0o755);
  liveDirs.add(dir);
  const server = new Server(await freePort(HOST), dir, opts.refuse);
  await server.setHosts(opts.hosts ?? []);
  await server.setSrv(opts.srv ?? []);
  try {
    await server.start();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}
