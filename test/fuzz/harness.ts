import net from "node:net";
import tls from "node:tls";
import { HEADER, PLAIN_SEEDS, PROXY_SEEDS, SECURE_SEEDS, proxyV2Seed } from "./corpus.js";
import { Random, cuts, mutate } from "./mutate.js";

export type Stage = "plain" | "secure" | "direct" | "proxy";

export interface FuzzCase {
  index: number;
  stage: Stage;
  input: Buffer;
  /** Offsets where one write ends and the next begins. */
  cuts: number[];
  /** Pause between writes (0: back to back). */
  pauseMs: number;
}

export interface Target {
  host: string;
  /** STARTTLS listener (plain and secure stages). */
  starttlsPort: number;
  directTlsPort: number;
  /** STARTTLS listener that reads a PROXY header first. */
  proxyPort: number;
  loginTimeoutMs: number;
}

export interface Outcome {
  index: number;
  stage: Stage;
  /**
   * stream-error: answered with one and closed; closed: closed without one
   * (a PROXY header refused, or the client's own stream end answered);
   * forwarded: logged in and relayed, the node's business from then on;
   * hang: still open, unanswered, past the login timeout (a failure);
   * setup: the unmutated part (STARTTLS, the TLS handshake) failed (a failure).
   */
  kind: "stream-error" | "closed" | "forwarded" | "hang" | "setup";
  condition?: string;
  /** From the last write to the close. */
  elapsedMs: number;
  received: string;
}

const STAGES: Array<[Stage, number]> = [["plain", 0.45], ["secure", 0.3], ["direct", 0.15], ["proxy", 0.1]];

/** Case `index` of the run with `seed`: the same on every machine, and replayable alone. */
export function makeCase(seed: number, index: number): FuzzCase {
  const random = Random.forCase(seed, index);
  let roll = random.next();
  const stage = STAGES.find(([, p]) => (roll -= p) < 0)?.[0] ?? "plain";
  const seeds = stage === "plain" ? PLAIN_SEEDS : stage === "proxy" ? [...PROXY_SEEDS, proxyV2Seed()] : SECURE_SEEDS;
  const chosen = random.pick<string | Buffer>(seeds);
  const input = mutate(Buffer.isBuffer(chosen) ? chosen : Buffer.from(chosen), random);
  return { index, stage, input, cuts: cuts(input.length, random), pauseMs: random.chance(0.1) ? 1 + random.int(20) : 0 };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const STREAM_ERROR = /<stream:error><([a-z-]+)/;
/**
 * Whether the node answered the login, so the connection was handed over and
 * is the node's business: the balancer itself never sends success, a
 * challenge or not-authorized, and its own failures' texts are its own
 * (lower-case, "the SASL payload is not base64"...), where a node's differ.
 */
function forwarded(received: string): boolean {
  if (/<(success|challenge) xmlns='urn:ietf:params:xml:ns:xmpp-sasl'|<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized\/>/.test(received)) return true;
  for (const m of received.matchAll(/<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>(?:<[a-z-]+\/>)(?:<text[^>]*>([^<]*)<\/text>)?/g)) {
    if (!/^(the |a |mechanism |no cluster node)/.test(m[1] ?? "the")) return true;
  }
  return false;
}

/** One connection: the stage's unmutated setup, the mutated input in its pieces, then what the balancer does. */
export async function runCase(c: FuzzCase, target: Target): Promise<Outcome> {
  let received = "";
  let closed = false;
  let socket: net.Socket;
  const outcome = (kind: Outcome["kind"], elapsedMs = 0): Outcome => ({ index: c.index, stage: c.stage, kind, elapsedMs, received, condition: STREAM_ERROR.exec(received)?.[1] });
  const watch = (s: net.Socket): void => {
    s.on("data", (d: Buffer) => void (received += d.toString("latin1")));
    s.on("error", () => {});
  };
  try {
    socket = await setup(c.stage, target, watch);
  } catch {
    return outcome("setup");
  }
  const ended = new Promise<void>((resolve) => socket.once("close", () => ((closed = true), resolve())));
  let from = 0;
  for (const to of c.cuts) {
    if (closed) break;
    socket.write(c.input.subarray(from, to));
    from = to;
    if (c.pauseMs > 0) await sleep(c.pauseMs);
  }
  const sent = performance.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([ended, new Promise<void>((r) => (timer = setTimeout(r, target.loginTimeoutMs + 2000)))]);
  clearTimeout(timer);
  const elapsed = performance.now() - sent;
  if (!closed) {
    socket.destroy();
    return outcome(forwarded(received) ? "forwarded" : "hang", elapsed);
  }
  return outcome(STREAM_ERROR.test(received) ? "stream-error" : "closed", elapsed);
}

async function setup(stage: Stage, target: Target, watch: (s: net.Socket) => void): Promise<net.Socket> {
  const { host } = target;
  if (stage === "direct") {
    const s = tls.connect({ host, port: target.directTlsPort, servername: "lb.test", rejectUnauthorized: false, ALPNProtocols: ["xmpp-client"] });
    watch(s);
    await new Promise<void>((resolve, reject) => s.once("secureConnect", resolve).once("close", reject));
    return s;
  }
  const raw = net.connect({ host, port: stage === "proxy" ? target.proxyPort : target.starttlsPort });
  watch(raw);
  await new Promise<void>((resolve, reject) => raw.once("connect", resolve).once("close", reject));
  if (stage !== "secure") return raw;
  let text = "";
  const proceed = new Promise<void>((resolve, reject) => {
    raw.on("data", (d: Buffer) => ((text += d.toString("latin1")), text.includes("<proceed") && resolve()));
    raw.once("close", reject);
  });
  raw.write(`${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
  await proceed;
  raw.removeAllListeners("data");
  const s = tls.connect({ socket: raw, servername: "lb.test", rejectUnauthorized: false });
  watch(s);
  await new Promise<void>((resolve, reject) => s.once("secureConnect", resolve).once("close", reject));
  return s;
}

export interface Report {
  count: number;
  byKind: Record<Outcome["kind"], number>;
  byCondition: Record<string, number>;
  /** Cases that ended only at the login timeout (a valid prefix waiting for more: allowed). */
  waited: number;
  failures: Outcome[];
}

/** Runs cases [first, first + count) of `seed`, `concurrency` at a time. */
export async function runFuzz(opts: { seed: number; count: number; first?: number; concurrency: number; target: Target; onProgress?: (done: number) => void }): Promise<Report> {
  const report: Report = { count: 0, byKind: { "stream-error": 0, closed: 0, forwarded: 0, hang: 0, setup: 0 }, byCondition: {}, waited: 0, failures: [] };
  const first = opts.first ?? 0;
  let next = first;
  const worker = async (): Promise<void> => {
    while (next < first + opts.count) {
      const result = await runCase(makeCase(opts.seed, next++), opts.target);
      report.count++;
      report.byKind[result.kind]++;
      if (result.condition !== undefined) report.byCondition[result.condition] = (report.byCondition[result.condition] ?? 0) + 1;
      if (result.condition === "connection-timeout") report.waited++;
      if (result.kind === "hang" || result.kind === "setup") report.failures.push(result);
      if (report.count % 1000 === 0) opts.onProgress?.(report.count);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return report;
}
