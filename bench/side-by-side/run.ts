/**
 * xmpp-lb side by side with HAProxy (Debian's, mode tcp, one thread), each
 * scenario running the contenders alternately in one run, a fresh process per
 * round; only the contender's own process is measured (/proc: CPU time and
 * RSS), never the load generator's or the node's.
 *
 *   relay     sessions ping-pong 200-byte stanzas through an echo node: CPU per round trip
 *   idle      sessions logged in and silent: RSS per session
 *   logins    full logins (TLS, PLAIN, bind, close) to a real Prosody node: CPU per login,
 *             forward and redirect, next to Prosody's own CPU per login
 *
 * The relay, idle and forwarded login rows also run Node's floor (node-pipe.mjs:
 * a bare pipe() relay, no XMPP), to tell what any Node relay costs from what
 * the balancer adds.
 *
 * Run: npm run bench [-- --quick] [-- --only relay,idle,logins] [-- --baseline OTHER/dist/src/cli.js]
 * (a full run of every scenario writes the table into BENCHMARKS.md; --only and --baseline write nothing;
 * --baseline runs another build of the balancer as a third contender, to measure a change in one run)
 */
import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import { startProsodyCluster, type ProsodyCluster } from "../../test/support/prosody.js";
import { BUILT_CLI, pin, startBalancer, startEchoNode, startHaproxy, startNodePipe, HAPROXY, type Contender } from "./contenders.js";
import { fullLogin, openMany, pingPong, redirectedLogin, type Endpoint, type TlsResumption } from "./loadgen.js";
import { cpuMs, cpuSplitMs, rssKb } from "./proc.js";

const quick = process.argv.includes("--quick");
/** `--only relay,idle`: just these scenarios (for a focused measurement). */
const onlyAt = process.argv.indexOf("--only");
const only = onlyAt < 0 ? null : new Set((process.argv[onlyAt + 1] ?? "").split(","));
/** `--baseline PATH`: another build's cli.js, run alternately with the two others. */
const baselineAt = process.argv.indexOf("--baseline");
const baseline = baselineAt < 0 ? undefined : process.argv[baselineAt + 1];
const wanted = (scenario: "relay" | "idle" | "logins"): boolean => only === null || only.has(scenario);
const ROUNDS = quick ? 1 : 2;
/** The relay rows flip between two levels from round to round, for every contender (the machine's speed varies): more rounds, and medians. */
const RELAY_ROUNDS = quick ? 1 : 5;
const RELAY_SECONDS = quick ? 2 : 5;
const IDLE_SESSIONS = quick ? 1000 : 8000;
/** How long the idle sessions stay idle before RSS is read (HAProxy's does not move meanwhile; the balancer's drops once V8 collects the logins' garbage). */
const IDLE_SETTLE_SECONDS = quick ? 2 : 30;
const LOGIN_SECONDS = quick ? 3 : 8;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The figure a ratio is taken of: the median of a contender's rounds (the mean of the middle two for an even count). */
const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
/** A contender's figures, as printed. */
const figures = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(", ");
/** How `xs` compares with HAProxy's figures of the same row: a ratio of medians. */
const vsHaproxy = (xs: number[], row: Row): string => `${(median(xs) / median(row.haproxy)).toFixed(2)}x`;
type Start = () => Promise<Contender>;
/** Starts the balancer from a given build's cli.js. */
type StartBalancer = (cli: string) => Promise<Contender>;
interface Row {
  scenario: string;
  unit: string;
  haproxy: number[];
  lb: number[];
  baseline: number[];
  /** Node's floor (a bare pipe relay), where the scenario has one. */
  floor: number[];
}
const rows: Row[] = [];

/**
 * The spread of the ratio, round by round (each round runs the contenders one
 * after the other, so a slow spell of the machine mostly hits both): what a
 * re-run may see.
 */
const roundRatios = (row: Row): string => {
  const ratios = row.lb.map((x, i) => x / row.haproxy[i]!);
  return `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}x`;
};

/**
 * Runs `measure` for each contender (and the baseline build, and Node's floor,
 * where given), alternately, `rounds` times, and keeps the figures.
 */
async function sideBySide(
  scenario: string,
  unit: string,
  starts: { haproxy: Start; lb: StartBalancer; floor?: Start },
  measure: (c: Contender) => Promise<number>,
  rounds = ROUNDS,
): Promise<void> {
  const row: Row = { scenario, unit, haproxy: [], lb: [], baseline: [], floor: [] };
  const contenders: Array<[keyof Pick<Row, "haproxy" | "lb" | "baseline" | "floor">, Start]> = [
    ["haproxy", starts.haproxy],
    ["lb", () => starts.lb(BUILT_CLI)],
  ];
  if (baseline !== undefined) contenders.push(["baseline", () => starts.lb(baseline)]);
  if (starts.floor !== undefined) contenders.push(["floor", starts.floor]);
  for (let round = 0; round < rounds; round++) {
    for (const [which, start] of contenders) {
      const contender = await start();
      try {
        row[which].push(await measure(contender));
      } finally {
        await contender.stop();
      }
    }
  }
  rows.push(row);
  const vs = (label: string, xs: number[]): string => (xs.length === 0 ? "" : ` | ${label} ${figures(xs)} -> ${vsHaproxy(xs, row)}`);
  console.log(`${scenario}: haproxy ${figures(row.haproxy)} | xmpp-lb ${figures(row.lb)} ${unit} -> ${vsHaproxy(row.lb, row)} (rounds ${roundRatios(row)})${vs("baseline build", row.baseline)}${vs("Node's floor", row.floor)}`);
}

async function relay(sessions: number, tls: boolean, echoPort: number): Promise<void> {
  await sideBySide(
    `relay, ${sessions} sessions, ${tls ? "TLS to the client" : "plaintext"}`,
    "us CPU per round trip",
    { haproxy: () => startHaproxy(`127.0.0.1:${echoPort}`), lb: (cli) => startBalancer(`127.0.0.1:${echoPort}`, "bench.test", { cli }), floor: () => startNodePipe(`127.0.0.1:${echoPort}`) },
    async (c) => {
      const sockets = await openMany({ port: tls ? c.tlsPort : c.plainPort, tls, domain: "bench.test" }, sessions);
      await pingPong(sockets, sleep(1000)); // warm-up
      const cpu = cpuSplitMs(c.pid);
      const trips = await pingPong(sockets, sleep(RELAY_SECONDS * 1000));
      const after = cpuSplitMs(c.pid);
      for (const s of sockets) s.destroy();
      const [user, system] = [((after.user - cpu.user) * 1000) / trips, ((after.system - cpu.system) * 1000) / trips];
      console.log(`  ${c.name}: ${user.toFixed(1)} us user + ${system.toFixed(1)} us system per round trip`);
      return user + system;
    },
    RELAY_ROUNDS,
  );
}

async function idle(tls: boolean, echoPort: number): Promise<void> {
  await sideBySide(
    `idle memory, ${IDLE_SESSIONS} sessions, ${tls ? "TLS terminated" : "plaintext"}`,
    "KB RSS per session",
    { haproxy: () => startHaproxy(`127.0.0.1:${echoPort}`), lb: (cli) => startBalancer(`127.0.0.1:${echoPort}`, "bench.test", { cli }), floor: () => startNodePipe(`127.0.0.1:${echoPort}`) },
    async (c) => {
      const ep = { port: tls ? c.tlsPort : c.plainPort, tls, domain: "bench.test" };
      const warm = await openMany(ep, 50);
      await sleep(500);
      const before = rssKb(c.pid);
      const sockets = await openMany(ep, IDLE_SESSIONS);
      // Idle for IDLE_SETTLE_SECONDS first: V8 collects what the logins left behind only once allocation has quietened.
      await sleep(IDLE_SETTLE_SECONDS * 1000);
      const perSession = (rssKb(c.pid) - before) / IDLE_SESSIONS;
      for (const s of [...warm, ...sockets]) s.destroy();
      return perSession;
    },
  );
}

/** `resumed`: each client keeps its TLS session ticket and offers it on its next connection, as a reconnecting client does. */
async function logins(cluster: ProsodyCluster, prosodyPid: () => number, mode: "forward" | "redirect" | "resumed"): Promise<void> {
  const node = cluster.nodes[0]!;
  const nodeCpuPerLogin: number[] = [];
  await sideBySide(
    mode === "resumed"
      ? "logins through forward, TLS terminated, sessions resumed (tickets)"
      : `logins through ${mode === "forward" ? "forward" : "redirect (xmpp-lb) vs forward (HAProxy)"}, TLS terminated`,
    "ms CPU per login",
    {
      haproxy: () => startHaproxy(`${node.internal.host}:${node.internal.port}`),
      // One account from one address: without --redirect-loop-window 0 every login after the first would be forwarded.
      lb: (cli) => startBalancer(`${node.internal.host}:${node.internal.port}`, cluster.domain, { extra: ["--mode", mode === "redirect" ? "redirect" : "forward", "--redirect-loop-window", "0"], cli }),
      // A redirect has no counterpart in a bare relay.
      floor: mode === "redirect" ? undefined : () => startNodePipe(`${node.internal.host}:${node.internal.port}`),
    },
    async (c) => {
      const ep = { port: c.tlsPort, tls: true, domain: cluster.domain };
      const redirect = c.name === "xmpp-lb" && mode === "redirect";
      // One TLS session per client when resuming: the warm-up gives each its first ticket.
      const sessions: TlsResumption[] = Array.from({ length: 8 }, () => ({ resumed: 0 }));
      const one = (i: number, client: number): Promise<void> =>
        redirect ? redirectedLogin(ep, "bench", "bench") : fullLogin(ep, "bench", "bench", `r${i}`, mode === "resumed" ? sessions[client] : undefined);
      for (let i = 0; i < 24; i++) await one(i, i % 8); // warm-up
      for (const s of sessions) s.resumed = 0;
      const cpu = cpuMs(c.pid);
      const nodeCpu = cpuMs(prosodyPid());
      let done = 0;
      const until = performance.now() + LOGIN_SECONDS * 1000;
      await Promise.all(Array.from({ length: 8 }, async (_, w) => {
        while (performance.now() < until) await one(w * 1_000_000 + done++, w);
      }));
      const used = cpuMs(c.pid) - cpu;
      if (!redirect) nodeCpuPerLogin.push((cpuMs(prosodyPid()) - nodeCpu) / done);
      const resumed = sessions.reduce((n, s) => n + s.resumed, 0);
      console.log(`  ${c.name}: ${(done / LOGIN_SECONDS).toFixed(0)} logins/s${mode === "resumed" ? `, ${resumed} of ${done} TLS sessions resumed` : ""}`);
      return used / done;
    },
  );
  if (nodeCpuPerLogin.length > 0) console.log(`  Prosody's own CPU per login: ${(nodeCpuPerLogin.reduce((a, b) => a + b, 0) / nodeCpuPerLogin.length).toFixed(2)} ms`);
}

const version = (cmd: string, args: string[]): string => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0]!.trim();
  } catch {
    return "not installed";
  }
};

const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${version(HAPROXY, ["-v"])}, Prosody ${version("dpkg-query", ["-W", "-f", "${Version}", "prosody"])}`;
console.log(machine);
if (version(HAPROXY, ["-v"]) === "not installed") {
  console.log("HAProxy is not installed (apt-get install haproxy): nothing to compare with; side-by-side scenarios skipped.");
} else {
  await scenarios();
}

async function scenarios(): Promise<void> {
  // The load generator (this process) and the nodes share the other cores; each contender gets the last one to itself.
  pin(process.pid, "others");
  const echo = await startEchoNode();
  try {
    if (wanted("relay")) for (const tls of [false, true]) for (const sessions of [100, 1000]) await relay(sessions, tls, echo.port);
    if (wanted("idle")) for (const tls of [false, true]) await idle(tls, echo.port);
  } finally {
    await echo.stop();
  }
  if (!wanted("logins")) return;
  let cluster: ProsodyCluster | undefined;
  try {
    cluster = await startProsodyCluster({ count: 1, externalPort: 0, users: [["bench", "bench"]] });
    pin(cluster.nodes[0]!.pid, "others");
    const pid = (): number => cluster!.nodes[0]!.pid;
    await logins(cluster, pid, "forward");
    await logins(cluster, pid, "resumed");
    await logins(cluster, pid, "redirect");
  } catch (err) {
    console.log(`logins skipped: ${(err as Error).message.split("\n")[0]}`);
  } finally {
    await cluster?.stop();
  }
}

const table = [
  "| scenario | unit | HAProxy | xmpp-lb | ratio (of medians) | ratio, round by round | Node's floor (bare pipe relay) | floor's ratio |",
  "|---|---|---|---|---|---|---|---|",
  ...rows.map((r) => {
    const floor = r.floor.length === 0 ? "- | -" : `${figures(r.floor)} | ${vsHaproxy(r.floor, r)}`;
    return `| ${r.scenario} | ${r.unit} | ${figures(r.haproxy)} | ${figures(r.lb)} | ${vsHaproxy(r.lb, r)} | ${roundRatios(r)} | ${floor} |`;
  }),
].join("\n");
console.log(`\n${table}`);
if (!quick && only === null && baseline === undefined && rows.length > 0) {
  const file = new URL("../../BENCHMARKS.md", import.meta.url);
  const text = await readFile(file, "utf8");
  const start = "<!-- side-by-side:start -->";
  const end = "<!-- side-by-side:end -->";
  const section = `${start}\nMachine: ${machine}. Run on ${new Date().toISOString().slice(0, 10)}.\n\n${table}\n${end}`;
  await writeFile(file, text.includes(start) ? text.replace(new RegExp(`${start}[\\s\\S]*${end}`), section) : `${text}\n${section}\n`);
}
