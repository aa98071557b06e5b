import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CERT = path.join(ROOT, "examples/tls/server.pem");
const KEY = path.join(ROOT, "examples/tls/server.key");
export const HAPROXY = process.env.HAPROXY_BIN ?? "/usr/sbin/haproxy";

/** A contender process and where it takes clients. */
export interface Contender {
  name: "haproxy" | "xmpp-lb" | "node-pipe";
  pid: number;
  plainPort: number;
  tlsPort: number;
  stop(): Promise<void>;
}

/**
 * Pins a process (all its threads) to some cores: each contender gets the last
 * core to itself and everything else (the load generator, the nodes) shares
 * the others, so the contenders are measured alike whatever the scheduler does.
 * Does nothing on one core or without taskset.
 */
export function pin(pid: number, cores: "contender" | "others"): void {
  const count = os.cpus().length;
  if (count < 2) return;
  const list = cores === "contender" ? `${count - 1}` : `0-${count - 2}`;
  try {
    execFileSync("taskset", ["-apc", list, String(pid)], { stdio: "ignore" });
  } catch {
    // no taskset: unpinned
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function accepting(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited: ${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not listening on ${port}: ${output()}`);
}

function started(child: ChildProcess): { output: () => string; exited: Promise<void> } {
  let text = "";
  child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (text += d.toString()));
  return { output: () => text.slice(-2000), exited: new Promise((r) => child.once("exit", () => r())) };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

/** A plain echo XMPP node (bench/side-by-side/echo-node.ts) in its own process. */
export async function startEchoNode(): Promise<{ port: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bench/side-by-side/echo-node.ts")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve) => child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  pin(child.pid!, "others");
  return { port, stop: () => stopChild(child, exited) };
}

/** Debian's HAProxy, mode tcp, one thread: a plaintext frontend and one terminating TLS, both to `backend` (HOST:PORT). */
export async function startHaproxy(backend: string): Promise<Contender> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bench-haproxy-"));
  const pem = path.join(dir, "server.pem");
  await writeFile(pem, (await readFile(CERT, "utf8")) + (await readFile(KEY, "utf8")));
  const [plainPort, tlsPort] = [await freePort(), await freePort()];
  const config = `global
  nbthread 1
  maxconn 9000
  tune.ssl.default-dh-param 2048
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend plain
  bind 127.0.0.1:${plainPort}
  default_backend node
frontend tls
  bind 127.0.0.1:${tlsPort} ssl crt ${pem} alpn xmpp-client
  default_backend node
backend node
  server n1 ${backend}
`;
  await writeFile(path.join(dir, "haproxy.cfg"), config);
  const child = spawn(HAPROXY, ["-f", path.join(dir, "haproxy.cfg"), "-db"], { stdio: ["ignore", "pipe", "pipe"] });
  const { output, exited } = started(child);
  await accepting(plainPort, child, output);
  pin(child.pid!, "contender");
  return {
    name: "haproxy",
    pid: child.pid!,
    plainPort,
    tlsPort,
    stop: async () => {
      await stopChild(child, exited);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Node's floor (bench/side-by-side/node-pipe.mjs): a bare `pipe()` relay, plaintext and TLS-terminating, to `backend`. */
export async function startNodePipe(backend: string): Promise<Contender> {
  const child = spawn(process.execPath, [path.join(ROOT, "bench/side-by-side/node-pipe.mjs"), backend, CERT, KEY], { stdio: ["ignore", "pipe", "pipe"] });
  const { exited } = started(child);
  const ports = await new Promise<string>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim()));
    child.once("exit", () => reject(new Error("node-pipe exited")));
  });
  const [plainPort, tlsPort] = ports.split(" ").map(Number) as [number, number];
  pin(child.pid!, "contender");
  return { name: "node-pipe", pid: child.pid!, plainPort, tlsPort, stop: () => stopChild(child, exited) };
}

export const BUILT_CLI = path.join(ROOT, "dist/src/cli.js");

export interface BalancerOptions {
  /** More balancer flags. */
  extra?: string[];
  /** Another build's cli.js (default: this one's dist/). */
  cli?: string;
  /** Flags for node itself, before the script (e.g. --heapsnapshot-signal). */
  nodeArgs?: string[];
  /** Where the process runs (heap snapshots are written there). */
  cwd?: string;
}

/**
 * The balancer from the build (dist/, or another build's cli.js), with a
 * plaintext STARTTLS listener and a direct-TLS one, forwarding to `backend`.
 */
export async function startBalancer(backend: string, domain: string, options: BalancerOptions = {}): Promise<Contender> {
  const cli = options.cli ?? BUILT_CLI;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: npm run build`);
  const [plainPort, tlsPort] = [await freePort(), await freePort()];
  const args = [...(options.nodeArgs ?? []), cli, "--listen", `127.0.0.1:${plainPort}`, "--listen", `direct-tls://127.0.0.1:${tlsPort}`, "--domain", domain, "--tls-cert", CERT, "--tls-key", KEY,
    "--allow-plaintext", "--node", `id=n1,internal=${backend}`, "--log-level", "warn", "--health-interval", "30", ...(options.extra ?? [])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], cwd: options.cwd });
  const { output, exited } = started(child);
  await accepting(plainPort, child, output);
  pin(child.pid!, "contender");
  return { name: "xmpp-lb", pid: child.pid!, plainPort, tlsPort, stop: () => stopChild(child, exited) };
}
