// Test fixture: throwaway redis-server processes on loopback (Debian's
// redis-server package, which also ships redis-cli). Each one has its own
// temp dir, no persistence, and a free port, so a system Redis on 6379 does
// not matter; every process is killed when the test process exits.

import { hookExit, tracked, liveDirs } from "./children.js";
import { freePort } from "./wait.js";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? "redis-server";
const REDIS_CLI = process.env.REDIS_CLI_BIN ?? "redis-cli";
const HOST = "127.0.0.1";
const execFileP = promisify(execFile);

/** Whether redis-server is on the PATH (Debian's `redis-server` package), or REDIS_SERVER_BIN names it. */
export function redisInstalled(): boolean {
  const candidates = REDIS_SERVER.includes("/") ? [REDIS_SERVER] : (process.env.PATH ?? "").split(":").map((dir) => path.join(dir, REDIS_SERVER));
  return candidates.some((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface RedisServer {
  host: string;
  port: number;
  /** redis://host:port/0 */
  url: string;
  /** SIGTERM, wait for the exit. */
  stop(): Promise<void>;
  /** Sends a signal: SIGSTOP and SIGCONT return at once; others wait for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port (empty: no persistence); resolves once it answers PING. */
  restart(): Promise<void>;
  /** Runs redis-cli against it; resolves with its output. */
  cli(...args: string[]): Promise<string>;
}

export interface RedisCluster {
  /** The three masters. */
  servers: RedisServer[];
  /** redis-cluster://host:port,host:port,host:port */
  url: string;
  stop(): Promise<void>;
}

/** One PING over a raw socket; true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, HOST);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 500);
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk: Buffer) => done(chunk.toString().startsWith("+PONG")));
    socket.on("error", () => done(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Server implements RedisServer {
  readonly host = HOST;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly extraArgs: readonly string[],
    /** Removed by stop() (a standalone server's own temp dir). */
    private readonly ownedDir?: string,
  ) {}

  get url(): string {
    return `redis://${this.host}:${this.port}/0`;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`redis-server on ${this.port} is already running`);
    const args = ["--port", String(this.port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", this.dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", path.join(this.dir, "redis.log"), ...this.extraArgs];
    const child = spawn(REDIS_SERVER, args, { stdio: "ignore" });
    this.child = child;
    let gone = false;
    this.exited = tracked(child).then(() => {
      gone = true;
      if (this.child === child) this.child = null;
    });
    child.once("error", () => {}); // ENOENT surfaces as an early exit below
    const deadline = Date.now() + 10_000;
    while (!gone && Date.now() < deadline) {
      if (await ping(this.port)) return;
      await sleep(20);
    }
    await this.kill("SIGKILL");
    throw new Error(`redis-server on ${HOST}:${this.port} ${gone ? "exited" : "never answered PING"} (is the redis-server package installed? log: ${this.dir}/redis.log)`);
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (child === null) return;
    child.kill(signal);
    if (signal === "SIGSTOP" || signal === "SIGCONT") return;
    if (signal === "SIGTERM") child.kill("SIGCONT"); // a stopped server must run to act on SIGTERM
    await this.exited;
  }

  async stop(): Promise<void> {
    await this.kill("SIGTERM");
    if (this.ownedDir !== undefined) removeDir(this.ownedDir);
  }

  async restart(): Promise<void> {
    await this.exited;
    await this.start();
  }

  async cli(...args: string[]): Promise<string> {
    const { stdout } = await execFileP(REDIS_CLI, ["-h", HOST, "-p", String(this.port), ...args], { timeout: 10_000 });
    return stdout;
  }
}

function tempDir(name: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `xmpp-lb-${name}-`));
  liveDirs.add(dir);
  return dir;
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** A standalone redis-server on a free loopback port. */
export async function startRedis(): Promise<RedisServer> {
  hookExit();
  const dir = tempDir("redis");
  const server = new Server(await freePort(HOST), dir, [], dir);
  try {
    await server.start();
  } catch (err) {
    removeDir(dir);
    throw err;
  }
  return server;
}

/** Three masters with --cluster-enabled, joined with redis-cli --cluster create; resolves once every one says cluster_state:ok. */
export async function startRedisCluster(): Promise<RedisCluster> {
  hookExit();
  const dir = tempDir("redis-cluster");
  const servers: Server[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    removeDir(dir);
  };
  try {
    for (let i = 0; i < 3; i++) {
      const nodeDir = path.join(dir, `m${i + 1}`);
      mkdirSync(nodeDir);
      // cluster-port: the bus port would otherwise be port + 10000, which may be taken or out of range.
      const args = ["--cluster-enabled", "yes", "--cluster-config-file", path.join(nodeDir, "nodes.conf"), "--cluster-node-timeout", "2000", "--cluster-port", String(await freePort(HOST))];
      servers.push(new Server(await freePort(HOST), nodeDir, args));
    }
    await Promise.all(servers.map((s) => s.start()));
    await execFileP(REDIS_CLI, ["--cluster", "create", ...servers.map((s) => `${HOST}:${s.port}`), "--cluster-replicas", "0", "--cluster-yes"], { timeout: 30_000 });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(servers.map((s) => s.cli("cluster", "info")));
      if (states.every((info) => info.includes("cluster_state:ok"))) break;
      if (Date.now() > deadline) throw new Error(`the Redis cluster never reached cluster_state:ok:\n${states.join("\n")}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { servers, url: `redis-cluster://${servers.map((s) => `${HOST}:${s.port}`).join(",")}`, stop };
}
