/**
 * Modern logins (XEP-0388 SASL2 + XEP-0386 Bind2, and XEP-0484 FAST) to a
 * Prosody 13 node, directly and through the balancer, side by side in one run:
 * round trips from TCP connect to the first stanza answered after the login,
 * wall time per login, and CPU per login of the balancer's process and of
 * Prosody's (user + system, from /proc/PID/stat).
 *
 *   password   SASL2 SCRAM-SHA-1 with Bind2 inline (no token asked)
 *   fast       SASL2 HT-SHA-256-NONE with Bind2 inline and <fast/>, with a token one
 *              password login asked for (<request-token/>, a fixed <user-agent id>);
 *              the newest token a success carries is used from then on
 *
 * Paths, each login being: stream header, STARTTLS, TLS (no session
 * resumption), stream header with from='bench@lb.test', <authenticate/>,
 * a disco#info iq to the server, </stream:stream>:
 *
 *   direct         STARTTLS at the node (its external address)
 *   through        the balancer (dist/, its own process): phase login, forward,
 *                  STARTTLS at the balancer, plaintext to the node (the default)
 *   through+btls   the same with --backend-tls (STARTTLS again, balancer to node)
 *
 * Round trips are counted on the wire by a delaying TCP proxy (below) in front
 * of the client, and one between the balancer and the node: a flight is a
 * chunk the client (balancer) sends after the last chunk it received, so a
 * TLS handshake counts as the client's flights too; the node leg also counts
 * its TCP connect (the proxy holds the first bytes one more round trip, as a
 * SYN would). The client is raw (node:net, node:tls, node:crypto), so it
 * waits only where the protocol makes it wait.
 *
 * Run: npm run build && node --import tsx bench/modern-logins.ts [--quick]
 * (a full run writes its table into BENCHMARKS.md between the modern-logins
 * markers; --quick, 20 logins a block and one round, writes nothing; so do
 * `npm run bench -- --only modern` and MODERN_LOGINS_NAGLE=off, Prosody with
 * Nagle off; MODERN_LOGINS_TRACE=1 prints each login's flights in ms and each
 * chunk the proxies carry)
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { startProsodyCluster, type ProsodyCluster } from "../test/support/prosody.js";
import { BUILT_CLI, freePort, pin } from "./side-by-side/contenders.js";
import { cpuMs } from "./side-by-side/proc.js";

const quick = process.argv.includes("--quick");
/** MODERN_LOGINS_NAGLE=off: Prosody with network_settings = { nagle = false } (its default is Nagle on); such a run writes nothing. */
const nagleOff = process.env.MODERN_LOGINS_NAGLE === "off";
const writes = !quick && !nagleOff && !process.argv.includes("--only");
const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CA = readFileSync(path.join(ROOT, "examples/tls/ca.pem"));
const CERT = path.join(ROOT, "examples/tls/server.pem");
const KEY = path.join(ROOT, "examples/tls/server.key");
const DOMAIN = "lb.test";
const USER = "bench";
const PASSWORD = "bench";
/** The one <user-agent id> of this client: Prosody keeps FAST tokens per account and user-agent id. */
const USER_AGENT_ID = "5b1c8f2e-3f7a-4d52-9a61-0c4de7b1a001";
/** Logins per block; each (kind, path) runs ROUNDS blocks, the blocks of a round alternating. */
const BLOCK = quick ? 20 : 100;
const ROUNDS = quick ? 1 : 3;
const WARMUP = quick ? 5 : 30;
/** Logins per (kind, path) with added latency (their median is shown). */
const LATENCY_LOGINS = quick ? 2 : 5;
const CLIENT_RTT_MS = 50;
const NODE_RTT_MS = 10;
/** MODERN_LOGINS_TRACE=1: every login's flights, in ms. */
const TRACE = process.env.MODERN_LOGINS_TRACE === "1";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Kind = "password" | "fast";
type PathName = "direct" | "through" | "through+btls";
const KINDS: Kind[] = ["password", "fast"];
const PATHS: PathName[] = ["direct", "through", "through+btls"];

// ---------------------------------------------------------------- the client

const NS_SASL2 = "urn:xmpp:sasl:2";
const header = (from: boolean): string =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${DOMAIN}' version='1.0'${from ? ` from='${USER}@${DOMAIN}'` : ""} xml:lang='en'>`;
const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64");
const unescape = (s: string): string => s.replace(/&apos;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const FEATURES = /<\/stream:features>/;
/** The SASL2 answers: a challenge, or the verdict. */
const SASL2_ANSWER = /<(challenge|success|failure)\s[^>]*urn:xmpp:sasl:2[^>]*>[\s\S]*?<\/\1>/;
const DISCO_ID = "disco1";
const DISCO_RESULT = new RegExp(`<iq\\b[^>]*\\bid=['"]${DISCO_ID}['"][^>]*(?:/>|>[\\s\\S]*?</iq>)`);

/** One XMPP client connection, raw: it writes, then waits for a pattern; what came before the match is consumed. */
class Wire {
  private buf = "";
  private waiter: { re: RegExp; resolve: (s: string) => void; reject: (e: Error) => void } | null = null;
  private closed = false;
  readonly gone: Promise<void>;
  /** Flights this client waited on (its own count; the proxy counts the wire's). */
  waits = 0;
  /** ms each flight took (the TLS handshake as one). */
  readonly steps: number[] = [];
  tlsProtocol: string | null = null;

  private constructor(private socket: net.Socket) {
    socket.setNoDelay(true);
    this.gone = new Promise((resolve) => socket.once("close", () => resolve()));
    this.listen(socket);
  }

  static open(host: string, port: number): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => resolve(new Wire(socket)));
      socket.once("error", reject);
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf += chunk.toString("utf8");
    this.check();
  };

  private listen(socket: net.Socket): void {
    socket.on("data", this.onData);
    socket.on("error", () => {});
    socket.once("close", () => {
      this.closed = true;
      this.check();
    });
  }

  private check(): void {
    const w = this.waiter;
    if (w === null) return;
    const m = w.re.exec(this.buf);
    if (m !== null) {
      const end = m.index + m[0].length;
      const got = this.buf.slice(0, end);
      this.buf = this.buf.slice(end);
      this.waiter = null;
      w.resolve(got);
    } else if (/<stream:error/.test(this.buf) || this.closed) {
      this.waiter = null;
      w.reject(new Error(`waiting for ${w.re}: ${this.closed ? "closed" : "stream error"}; got ${this.buf.slice(-400)}`));
    }
  }

  /** Sends `data` and waits for `re`: one flight. */
  ask(data: string, re: RegExp, timeoutMs = 15_000): Promise<string> {
    this.waits++;
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${re} within ${timeoutMs} ms; got ${this.buf.slice(-400)}`)), timeoutMs);
      this.waiter = { re, resolve: (s) => (clearTimeout(timer), this.steps.push(performance.now() - t0), resolve(s)), reject: (e) => (clearTimeout(timer), reject(e)) };
      this.socket.write(data);
      this.check();
    });
  }

  /** <starttls/>, <proceed/>, then the TLS handshake (a full one: no session is offered). */
  async starttls(): Promise<void> {
    await this.ask(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`, /<proceed\b[^>]*\/>|<proceed\b[^>]*><\/proceed>/);
    const plain = this.socket;
    plain.off("data", this.onData);
    const t0 = performance.now();
    const secure = tls.connect({ socket: plain, servername: DOMAIN, ca: CA });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    this.steps.push(performance.now() - t0);
    this.tlsProtocol = secure.getProtocol();
    this.waits += this.tlsProtocol === "TLSv1.3" ? 1 : 2;
    this.socket = secure;
    this.listen(secure);
  }

  /** </stream:stream>, and the server's close. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.socket.end(`</stream:stream>`);
      const timer = setTimeout(() => this.socket.destroy(), 3000);
      await this.gone;
      clearTimeout(timer);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** SCRAM-SHA-1's SaltedPassword, kept per salt and iteration count as clients may (RFC 5802 5.1): the bench's own PBKDF2 stays out of the way. */
const salted = new Map<string, Buffer>();
const sha1 = (b: Buffer): Buffer => createHash("sha1").update(b).digest();
const hmac = (hash: string, key: Buffer | string, data: string): Buffer => createHmac(hash, key).update(data).digest();

const userAgent = `<user-agent id='${USER_AGENT_ID}'><software>xmpp-lb bench</software><device>bench</device></user-agent>`;
const bind2 = `<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag></bind>`;

interface LoginOutcome {
  /** ms from TCP connect to the disco#info result. */
  wallMs: number;
  /** The client's own count of the flights it waited on. */
  waits: number;
  tlsProtocol: string | null;
  /** A FAST token the success carried, if any. */
  token: string | null;
}

/**
 * One login: stream, STARTTLS, stream, SASL2 <authenticate/> (SCRAM-SHA-1 or
 * a FAST token) with Bind2, a disco#info iq, close. `requestToken`: ask for
 * a FAST token with the password login.
 */
async function login(host: string, port: number, kind: Kind, fast: { token: string | null }, opts: { requestToken?: boolean; onAnswered?: () => void } = {}): Promise<LoginOutcome> {
  const wire = await Wire.open(host, port);
  const start = performance.now();
  try {
    await wire.ask(header(false), FEATURES);
    await wire.starttls();
    const features = await wire.ask(header(true), FEATURES);
    if (!features.includes(NS_SASL2)) throw new Error(`no SASL2 offered: ${features}`);
    let success: string;
    if (kind === "fast") {
      if (!/<fast\b[^>]*urn:xmpp:fast:0[\s\S]*?HT-SHA-256-NONE/.test(features)) throw new Error(`no FAST HT-SHA-256-NONE offered: ${features}`);
      if (fast.token === null) throw new Error("no FAST token");
      const proof = Buffer.concat([Buffer.from(`${USER}\0`), hmac("sha256", fast.token, "Initiator")]);
      success = await wire.ask(
        `<authenticate xmlns='${NS_SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${b64(proof)}</initial-response>${userAgent}${bind2}<fast xmlns='urn:xmpp:fast:0'/></authenticate>`,
        SASL2_ANSWER,
      );
      if (!success.includes("<success")) throw new Error(`FAST login refused: ${success}`);
      const data = /<additional-data>([^<]*)<\/additional-data>/.exec(success)?.[1];
      const expected = hmac("sha256", fast.token, "Responder");
      const given = Buffer.from(data ?? "", "base64");
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new Error("FAST: wrong responder hash");
    } else {
      const nonce = randomBytes(18).toString("base64");
      const first = `n=${USER},r=${nonce}`;
      const request = opts.requestToken === true ? `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>` : "";
      const challenge = await wire.ask(
        `<authenticate xmlns='${NS_SASL2}' mechanism='SCRAM-SHA-1'><initial-response>${b64(`n,,${first}`)}</initial-response>${userAgent}${bind2}${request}</authenticate>`,
        SASL2_ANSWER,
      );
      const body = /<challenge\b[^>]*>([^<]*)<\/challenge>/.exec(challenge)?.[1];
      if (body === undefined) throw new Error(`expected a SCRAM challenge: ${challenge}`);
      const serverFirst = Buffer.from(body, "base64").toString("utf8");
      const attrs = new Map(serverFirst.split(",").map((kv) => [kv[0]!, kv.slice(2)] as const));
      const [r, s, i] = [attrs.get("r")!, attrs.get("s")!, Number(attrs.get("i"))];
      if (!r.startsWith(nonce)) throw new Error(`bad server-first-message ${serverFirst}`);
      const saltKey = `${s}/${i}`;
      let key = salted.get(saltKey);
      if (key === undefined) salted.set(saltKey, (key = pbkdf2Sync(PASSWORD, Buffer.from(s, "base64"), i, 20, "sha1")));
      const withoutProof = `c=${b64("n,,")},r=${r}`;
      const authMessage = `${first},${serverFirst},${withoutProof}`;
      const clientKey = hmac("sha1", key, "Client Key");
      const signature = hmac("sha1", sha1(clientKey), authMessage);
      const proof = Buffer.from(clientKey.map((b, n) => b ^ signature[n]!));
      success = await wire.ask(`<response xmlns='${NS_SASL2}'>${b64(`${withoutProof},p=${proof.toString("base64")}`)}</response>`, SASL2_ANSWER);
      if (!success.includes("<success")) throw new Error(`password login refused: ${success}`);
      const data = /<additional-data>([^<]*)<\/additional-data>/.exec(success)?.[1] ?? "";
      const v = /(?:^|,)v=([^,]+)/.exec(Buffer.from(data, "base64").toString("utf8"))?.[1];
      const serverSignature = hmac("sha1", hmac("sha1", key, "Server Key"), authMessage);
      if (v === undefined || !Buffer.from(v, "base64").equals(serverSignature)) throw new Error("SCRAM: wrong server signature");
    }
    if (!/<bound\b[^>]*urn:xmpp:bind:0/.test(success)) throw new Error(`Bind2 did not bind: ${success}`);
    const tokenTag = /<token\b[^>]*urn:xmpp:fast:0[^>]*>/.exec(success)?.[0];
    const token = tokenTag === undefined ? null : unescape(/\stoken=(['"])([^'"]*)\1/.exec(tokenTag)![2]!);
    if (token !== null) fast.token = token;
    await wire.ask(`<iq type='get' id='${DISCO_ID}' to='${DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, DISCO_RESULT);
    const wallMs = performance.now() - start;
    opts.onAnswered?.();
    if (TRACE) console.log(`    ${kind} to ${port}: ${wire.steps.map(f1).join(" ")} ms`);
    await wire.close();
    return { wallMs, waits: wire.waits, tlsProtocol: wire.tlsProtocol, token };
  } catch (err) {
    wire.destroy();
    throw err;
  }
}

// ---------------------------------------------------------------- the wire's round trips, and latency

/**
 * A TCP proxy on loopback that delays every chunk by `oneWayMs` each way (in
 * order) and counts flights: a chunk from the near side (the client, or the
 * balancer) that follows a chunk delivered to it, the first one included.
 * `connectRtt`: the near side's TCP connect costs a round trip too (its first
 * bytes are held one more round trip, and it counts as a flight).
 */
class DelayProxy {
  private server: net.Server | undefined;
  oneWayMs = 0;
  flights = 0;
  connections = 0;
  private generation = 0;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly connectRtt: boolean,
  ) {}

  async start(): Promise<number> {
    this.server = net.createServer((near) => this.carry(near));
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Counting starts again, with connections opened from now on (a previous login's stragglers, such as its relayed </stream:stream>, do not count). */
  reset(): void {
    this.flights = 0;
    this.connections = 0;
    this.generation++;
  }

  private carry(near: net.Socket): void {
    this.connections++;
    const generation = this.generation;
    const count = (): void => {
      if (generation === this.generation) this.flights++;
    };
    const far = net.connect(this.target);
    near.setNoDelay(true);
    far.setNoDelay(true);
    const oneWay = this.oneWayMs;
    let heard = true;
    if (this.connectRtt) count();
    // When the next chunk each way may be delivered: never before the one ahead of it.
    let upAt = performance.now() + (this.connectRtt ? 2 * oneWay : 0);
    let downAt = 0;
    const later = (at: number, write: () => void): void => {
      const wait = at - performance.now();
      if (wait <= 0 && oneWay === 0) write();
      else setTimeout(write, Math.max(0, wait));
    };
    near.on("data", (chunk: Buffer) => {
      if (TRACE) console.log(`      ${this.target.port} up ${heard ? "new flight" : "same flight"} ${chunk.length} B: ${JSON.stringify(chunk.subarray(0, 90).toString("latin1"))}`);
      if (heard) count();
      heard = false;
      upAt = Math.max(upAt, performance.now() + oneWay);
      later(upAt, () => far.write(chunk));
    });
    far.on("data", (chunk: Buffer) => {
      downAt = Math.max(downAt, performance.now() + oneWay);
      later(downAt, () => {
        if (TRACE) console.log(`      ${this.target.port} down ${chunk.length} B: ${JSON.stringify(chunk.subarray(0, 90).toString("latin1"))}`);
        heard = true;
        near.write(chunk);
      });
    });
    const endBoth = (): void => {
      later(Math.max(upAt, downAt) + 1, () => {
        near.destroy();
        far.destroy();
      });
    };
    near.on("end", () => later(upAt, () => far.end()));
    far.on("end", () => later(downAt, () => near.end()));
    near.on("close", endBoth);
    far.on("close", endBoth);
    near.on("error", () => {});
    far.on("error", () => {});
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

// ---------------------------------------------------------------- the balancer

interface Balancer {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** The balancer from dist/, its own process: one STARTTLS listener, phase login, forward, the one node at `node`. */
async function startBalancer(node: { host: string; port: number }, backendTls: boolean): Promise<Balancer> {
  const port = await freePort();
  const args = [BUILT_CLI, "--listen", `127.0.0.1:${port}`, "--domain", DOMAIN, "--tls-cert", CERT, "--tls-key", KEY, "--mode", "forward", "--phase", "login",
    "--node", `id=n1,internal=${node.host}:${node.port}`, "--log-level", "warn", "--health-interval", "600",
    ...(backendTls ? ["--backend-tls", "--backend-ca", path.join(ROOT, "examples/tls/ca.pem")] : [])];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const stop = async (): Promise<void> => {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  };
  // Ready once its first health probe has taught it the node's SASL2 and FAST offer.
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the balancer exited: ${output.slice(-2000)}`);
    try {
      const wire = await Wire.open("127.0.0.1", port);
      try {
        await wire.ask(header(false), FEATURES, 2000);
        await wire.starttls();
        const features = await wire.ask(header(true), FEATURES, 2000);
        if (features.includes(NS_SASL2) && features.includes("urn:xmpp:fast:0")) break;
      } finally {
        wire.destroy();
      }
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the balancer never offered SASL2 with FAST: ${output.slice(-2000)}`);
    }
    await sleep(100);
  }
  pin(child.pid!, "contender");
  return { pid: child.pid!, port, stop };
}

// ---------------------------------------------------------------- the run

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const f1 = (x: number): string => x.toFixed(1);
const f2 = (x: number): string => x.toFixed(2);
const version = (cmd: string, args: string[]): string => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0]!.trim();
  } catch {
    return "not installed";
  }
};
const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?";
const machine = `nproc ${os.cpus().length}, ${cpuModel}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, Prosody ${version("dpkg-query", ["-W", "-f", "${Version}", "prosody"])}, prosody-modules ${version("dpkg-query", ["-W", "-f", "${Version}", "prosody-modules"])}`;
console.log(`modern logins: ${machine}${nagleOff ? "; Prosody with nagle = false" : ""}`);
const loadBefore = os.loadavg()[0]!;

interface Trips {
  /** Client flights after TCP connect up to the disco#info result, counted on the wire. */
  client: number;
  /** The client's own count (the same, unless the wire disagrees). */
  clientOwn: number;
  /** Balancer-to-node flights (its TCP connect included) up to the same point; 0 direct. */
  node: number;
  /** Median ms per login with the client leg's RTT at CLIENT_RTT_MS. */
  clientRttWall: number;
  /** Median ms per login with the node leg's RTT at NODE_RTT_MS (through paths only). */
  nodeRttWall: number | null;
}
interface Cpu {
  /** ms of CPU per login, one figure per round. */
  prosody: number[];
  balancer: number[];
  /** Median ms from TCP connect to the disco#info result, no added latency. */
  wall: number[];
}
const trips = new Map<string, Trips>();
const cpu = new Map<string, Cpu>();
const key = (kind: Kind, p: PathName): string => `${kind} ${p}`;
const tlsSeen = new Set<string>();

let cluster: ProsodyCluster | undefined;
const started: Array<{ stop(): Promise<void> }> = [];
try {
  cluster = await startProsodyCluster({
    count: 1,
    modern: true,
    externalPort: 0,
    network: { internal: "127.0.57", external: "127.0.58" },
    users: [[USER, PASSWORD]],
    // Prosody's packaged default (info to a file), not the test support's debug log: its CPU per login is the node's work, not its debug logging.
    extraConfig: `log = { info = "prosody.log" }\n${nagleOff ? "network_settings = { nagle = false }\n" : ""}`,
  });
  const node = cluster.nodes[0]!;
  pin(node.pid, "others");
  pin(process.pid, "others");
  const prosodyPid = node.pid;

  // The token: one password login asks for it (directly: the node keeps it; the balancer routes a token it has not seen by its strategy).
  const fast = { token: null as string | null };
  await login(node.external.host, node.external.port, "password", fast, { requestToken: true });
  if (fast.token === null) throw new Error("the password login with <request-token/> got no token");

  // Round trips and latency: proxies in front of the client, and between the balancer and the node.
  const nodeProxy = new DelayProxy(node.internal, true);
  const nodeProxyPort = await nodeProxy.start();
  started.push(nodeProxy);
  const viaProxy = { host: "127.0.0.1", port: nodeProxyPort };
  const latencyLbs = { through: await startBalancer(viaProxy, false), "through+btls": await startBalancer(viaProxy, true) };
  started.push(...Object.values(latencyLbs));
  const targetOf = (p: PathName, lbs: Record<"through" | "through+btls", Balancer>): { host: string; port: number } =>
    p === "direct" ? node.external : { host: "127.0.0.1", port: lbs[p].port };

  for (const p of PATHS) {
    const clientProxy = new DelayProxy(targetOf(p, latencyLbs), false);
    const clientPort = await clientProxy.start();
    for (const kind of KINDS) {
      // Counted once with the delays on (chunks then cannot pass each other), then timed.
      const one = async (): Promise<{ wall: number; client: number; node: number; own: number }> => {
        clientProxy.reset();
        nodeProxy.reset();
        let at = { client: 0, node: 0 };
        const out = await login("127.0.0.1", clientPort, kind, fast, { onAnswered: () => (at = { client: clientProxy.flights, node: nodeProxy.flights }) });
        if (out.tlsProtocol !== null) tlsSeen.add(out.tlsProtocol);
        return { wall: out.wallMs, ...at, own: out.waits };
      };
      clientProxy.oneWayMs = CLIENT_RTT_MS / 2;
      nodeProxy.oneWayMs = 0;
      const clientRtt = [];
      for (let i = 0; i < LATENCY_LOGINS; i++) clientRtt.push(await one());
      let nodeRttWall: number | null = null;
      let nodeFlights = 0;
      if (p !== "direct") {
        clientProxy.oneWayMs = 0;
        nodeProxy.oneWayMs = NODE_RTT_MS / 2;
        const nodeRtt = [];
        for (let i = 0; i < LATENCY_LOGINS; i++) nodeRtt.push(await one());
        nodeRttWall = median(nodeRtt.map((r) => r.wall));
        nodeFlights = nodeRtt[0]!.node;
      }
      const t: Trips = { client: clientRtt[0]!.client, clientOwn: clientRtt[0]!.own, node: nodeFlights, clientRttWall: median(clientRtt.map((r) => r.wall)), nodeRttWall };
      trips.set(key(kind, p), t);
      console.log(`  ${kind} ${p}: ${t.client} client round trips (own count ${t.clientOwn}), ${t.node} node-leg; ${f1(t.clientRttWall)} ms at client RTT ${CLIENT_RTT_MS} ms${nodeRttWall === null ? "" : `, ${f1(nodeRttWall)} ms at node RTT ${NODE_RTT_MS} ms`}`);
    }
    await clientProxy.stop();
  }
  for (const lb of Object.values(latencyLbs)) await lb.stop();

  // CPU: no proxies; a balancer each pointing at the node itself.
  const lbs = { through: await startBalancer(node.internal, false), "through+btls": await startBalancer(node.internal, true) };
  started.push(...Object.values(lbs));
  const block = async (kind: Kind, p: PathName, n: number): Promise<{ prosody: number; balancer: number; wall: number }> => {
    const to = targetOf(p, lbs);
    const lbPid = p === "direct" ? undefined : lbs[p].pid;
    const [p0, b0] = [cpuMs(prosodyPid), lbPid === undefined ? 0 : cpuMs(lbPid)];
    const walls: number[] = [];
    for (let i = 0; i < n; i++) walls.push((await login(to.host, to.port, kind, fast)).wallMs);
    const [p1, b1] = [cpuMs(prosodyPid), lbPid === undefined ? 0 : cpuMs(lbPid)];
    return { prosody: (p1 - p0) / n, balancer: (b1 - b0) / n, wall: median(walls) };
  };
  for (const kind of KINDS) for (const p of PATHS) await block(kind, p, WARMUP);
  for (let round = 0; round < ROUNDS; round++) {
    for (const kind of KINDS) {
      for (const p of PATHS) {
        const r = await block(kind, p, BLOCK);
        const c = cpu.get(key(kind, p)) ?? { prosody: [], balancer: [], wall: [] };
        c.prosody.push(r.prosody);
        c.balancer.push(r.balancer);
        c.wall.push(r.wall);
        cpu.set(key(kind, p), c);
        console.log(`  round ${round + 1}, ${kind} ${p}: Prosody ${f2(r.prosody)} ms, balancer ${f2(r.balancer)} ms CPU per login; ${f2(r.wall)} ms median login`);
      }
    }
  }
} finally {
  for (const s of started.reverse()) await s.stop().catch(() => {});
  await cluster?.stop();
}

// ---------------------------------------------------------------- the table

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const span = (xs: number[]): string => (xs.length < 2 ? "" : ` (${f2(Math.min(...xs))}-${f2(Math.max(...xs))})`);
const label: Record<Kind, string> = { password: "password (SASL2 SCRAM-SHA-1 + Bind2)", fast: "FAST token (SASL2 HT-SHA-256-NONE + Bind2)" };
const pathLabel: Record<PathName, string> = { direct: "direct (STARTTLS at the node)", through: "through, plaintext to the node", "through+btls": "through, --backend-tls" };
/** The client's flights before its <authenticate/> (stream, STARTTLS, TLS 1.3, stream): the later ones cross the node leg too. */
const BEFORE_AUTH = 4;
const lines: string[] = [
  `| login | path | client round trips | node-leg round trips (TCP connect included) | ms per login at client RTT ${CLIENT_RTT_MS} ms | at node RTT ${NODE_RTT_MS} ms | on loopback | Prosody CPU ms/login | balancer CPU ms/login | total CPU ms/login | total vs direct |`,
  "|---|---|---|---|---|---|---|---|---|---|---|",
];
for (const kind of KINDS) {
  const direct = cpu.get(key(kind, "direct"))!;
  for (const p of PATHS) {
    const t = trips.get(key(kind, p))!;
    const c = cpu.get(key(kind, p))!;
    const total = mean(c.prosody) + mean(c.balancer);
    const own = t.clientOwn === t.client ? "" : ` (client's own count ${t.clientOwn})`;
    lines.push(
      `| ${label[kind]} | ${pathLabel[p]} | ${t.client}${own} | ${p === "direct" ? "-" : `${t.node} (${t.node - (t.client - BEFORE_AUTH)} of them the balancer's own)`} | ${f1(t.clientRttWall)} | ${t.nodeRttWall === null ? "-" : f1(t.nodeRttWall)} | ${f2(median(c.wall))} | ` +
        `${f2(mean(c.prosody))}${span(c.prosody)} | ${p === "direct" ? "-" : `${f2(mean(c.balancer))}${span(c.balancer)}`} | ${f2(total)} | ${p === "direct" ? "1.00x" : `${f2(total / (mean(direct.prosody)))}x`} |`,
    );
  }
}
const table = lines.join("\n");
const summary = `Machine: ${machine}; TLS ${[...tlsSeen].join(", ")} (ECDSA P-256 certificate, full handshakes). ${ROUNDS} rounds of ${BLOCK} sequential logins per row after ${WARMUP} warm-up ones; CPU figures are the mean (the rounds' range in brackets). Load average ${f1(loadBefore)} before, ${f1(os.loadavg()[0]!)} after. Run on ${new Date().toISOString().slice(0, 10)}.`;
console.log(`\n${summary}\n\n${table}`);
if (writes) {
  const file = new URL("../BENCHMARKS.md", import.meta.url);
  const text = await readFile(file, "utf8");
  const start = "<!-- modern-logins:start -->";
  const end = "<!-- modern-logins:end -->";
  const section = `${start}\n${summary}\n\n${table}\n${end}`;
  await writeFile(file, text.includes(start) ? text.replace(new RegExp(`${start}[\\s\\S]*${end}`), section) : `${text}\n${section}\n`);
}
