// Test fixture: N real ejabberd 23.01 nodes (Debian's package) on loopback,
// standing in for an XMPP cluster behind the balancer, as prosody.ts does with
// Prosody. They do not cluster: each node has its own Erlang node name, its own
// random cookie and its own Mnesia spool, and register() creates every account
// on every node with the same password, so any node can log any user in.
//
// Node i (1-based) listens for c2s on
//   internal 127.0.3.i:<free port>  (what the balancer dials / probes; STARTTLS offered, not required)
//   external 127.0.4.i:<free port>  (what see-other-host points clients at; STARTTLS required)
//   proxy    127.0.3.i:<free port>  (optional: `use_proxy_protocol: true`, for --backend-proxy-protocol)
// and names itself "n<i>" in disco#info (mod_disco's `name` option: the server
// identity's name), so clients.ts's nodeOf() tells ejabberd nodes apart too.
//
// How a node runs: not through /usr/sbin/ejabberdctl, which as root re-runs
// itself as the `ejabberd` user through su (who could not read a root-owned
// temp dir, and the su in between would keep the test from owning the Erlang
// process), refuses any other user, and leans on epmd. Instead `erl` is
// started directly with what `ejabberdctl foreground` passes it (`-mnesia dir
// ... -s ejabberd -noinput`, Debian's ERL_LIBS, the config and log paths in
// EJABBERD_CONFIG_PATH / EJABBERD_LOG_PATH), everything pointed into the
// node's temp dir, plus `-erl_epmd_port PORT -start_epmd false` (what
// ejabberdctl does with ERL_DIST_PORT): the Erlang distribution listens on
// 127.0.3.i:PORT only and is dialed there, so no epmd is needed or started (if
// one runs anyway, e.g. the package's, the node's unique name is registered
// there until it exits). `ejabberdctl COMMAND ...` is the RPC ejabberdctl
// makes, ejabberd_ctl:process([COMMAND, ...]), from a hidden `erl` with the
// node's cookie (see ctlAll()). This works as root and as any other user, and
// writes nothing outside the temp dir (/etc/ejabberd/inetrc is only read).
// A node is ready in ~1.5 s alone; two at once, with their accounts, take
// 3-4 s on a 2-CPU machine.

import { hookExit, tracked, liveDirs } from "./children.js";
import { freePort, sleep } from "./wait.js";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export interface HostPort {
  host: string;
  port: number;
}

export interface EjabberdNode {
  /** "n1", "n2", ...: also the disco#info server identity name of the node. */
  id: string;
  /** The Erlang node name (unique per run), e.g. "xmpp-lb-n1-3f2a@127.0.3.1". */
  erlangNode: string;
  internal: HostPort;
  external: HostPort;
  /** The c2s listener with `use_proxy_protocol: true` (option `proxyListener`), else undefined. */
  proxy: HostPort | undefined;
  /** Pid of the running Erlang VM (0 while stopped). */
  readonly pid: number;
  /** ejabberd's log (info level: connections with their addresses, authentications); console output goes to console.log beside it. */
  logFile: string;
  configFile: string;
  /** The whole log so far ("" before the node wrote one). */
  log(): string;
  /** Runs an ejabberdctl command against this node (e.g. ["register", "alice", "lb.test", "pw"]); resolves with its output. */
  ctl(args: string[]): Promise<string>;
  /** SIGTERM (graceful), wait for exit; SIGKILL after a few seconds. */
  stop(): Promise<void>;
  /** Send a signal (default SIGKILL) and wait for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** (Re)start with the same config and spool; resolves once every listener serves stream features. */
  start(): Promise<void>;
}

export interface EjabberdCluster {
  domain: string;
  nodes: EjabberdNode[];
  /** The temp dir holding every node's config, spool and logs. */
  dir: string;
  /** Creates an account on every node (`ejabberdctl register`). */
  register(user: string, password: string): Promise<void>;
  /** Stops all nodes and removes the temp dir. */
  stop(): Promise<void>;
}

export interface EjabberdClusterOptions {
  count?: number;
  domain?: string;
  users?: Array<[string, string]>;
  /** Parent directory for the cluster's temp dir (default os.tmpdir()). */
  dir?: string;
  /** Keep the temp dir (logs) on stop(). Also enabled by XMPP_LB_KEEP_EJABBERD=1. */
  keepDir?: boolean;
  /** Add a third c2s listener with `use_proxy_protocol: true` on 127.0.3.i (node.proxy). */
  proxyListener?: boolean;
  /** mod_fail2ban's c2s_max_auth_failures (ejabberd's default: 20). */
  maxAuthFailures?: number;
  /** Addresses (CIDR) mod_fail2ban never bans: an `acl` and an access rule for its `access` option, as the README shows for a balancer. */
  fail2banExempt?: string[];
  /** Per-node readiness timeout in ms (default 20000). */
  readyTimeout?: number;
}

const ERL = process.env.EJABBERD_ERL_BIN ?? "/usr/bin/erl";
/** Where Debian's ejabberd-23.01-1/ebin lives (ejabberdctl's ERL_LIBS); the erlang-p1-* libraries are in Erlang's own lib dir. */
const ERL_LIBS = process.env.EJABBERD_ERL_LIBS ?? "/usr/lib/x86_64-linux-gnu";
const INETRC = "/etc/ejabberd/inetrc";
const TLS_DIR = fileURLToPath(new URL("../../examples/tls/", import.meta.url));
const execFileP = promisify(execFile);

/** YAML scalar: a JSON string is a valid YAML double-quoted string. */
const y = (s: string): string => JSON.stringify(s);

interface ConfigParams {
  id: string;
  dir: string;
  domain: string;
  internal: HostPort;
  external: HostPort;
  proxy: HostPort | undefined;
  maxAuthFailures: number | undefined;
  fail2banExempt: string[] | undefined;
}

function configFor(o: ConfigParams): string {
  const p = (f: string): string => y(path.join(o.dir, f));
  const listener = (addr: HostPort, extra: string): string => `  -
    ip: ${y(addr.host)}
    port: ${addr.port}
    module: ejabberd_c2s
    starttls: true
${extra}`;
  const fail2banOptions = [
    ...(o.maxAuthFailures === undefined ? [] : [`c2s_max_auth_failures: ${o.maxAuthFailures}`]),
    ...(o.fail2banExempt === undefined ? [] : ["access: xmpp_lb_trusted"]),
  ];
  const fail2ban = fail2banOptions.length === 0 ? "{}" : fail2banOptions.map((l) => `\n    ${l}`).join("");
  const exempt =
    o.fail2banExempt === undefined
      ? ""
      : `
# The balancer's addresses, which mod_fail2ban must never ban (its \`access\` option).
acl:
  xmpp_lb:
    ip: [${o.fail2banExempt.map(y).join(", ")}]
access_rules:
  xmpp_lb_trusted:
    allow: xmpp_lb
`;
  return `# generated by test/support/ejabberd.ts
hosts: [${y(o.domain)}]
loglevel: info
log_rotate_count: 0
# The development certificate and its key in one file (server.pem + server.key).
# ejabberd warns "certificate is signed by unknown CA" (the development CA): harmless.
certfiles: [${p("tls.pem")}]

auth_method: internal
# Plain storage (ejabberd's default): every SCRAM variant can be offered
# (SCRAM-SHA-1, -256 and -512; scram storage offers only auth_scram_hash's).
auth_password_format: plain
# TLS from the client ends at the balancer, and the balancer's stream to the
# node is its own: channel binding cannot hold across it, so no -PLUS
# mechanism (and ejabberd 26.03+ refuses a client's gs2 'y' flag on a TLS
# stream unless -PLUS is disabled: a client that can bind, offered no -PLUS
# by the balancer, sends 'y'). The balancer does not speak X-OAUTH2;
# DIGEST-MD5 is obsolete (RFC 6331).
disable_sasl_mechanisms: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS", "X-OAUTH2", "DIGEST-MD5"]
${exempt}
listen:
  # Balancer-facing: STARTTLS offered but not required, so the balancer may
  # talk plaintext on this (trusted, internal) address.
${listener(o.internal, "")}  # Client-facing (where see-other-host sends clients): TLS required.
${listener(o.external, "    starttls_required: true\n")}${o.proxy === undefined ? "" : `  # Behind --backend-proxy-protocol: the first bytes are a PROXY header (v1 or v2).\n${listener(o.proxy, "    use_proxy_protocol: true\n")}`}
modules:
  mod_admin_extra: {}
  mod_disco:
    # The server identity's name in disco#info: how tests tell nodes apart.
    name: ${y(o.id)}
  # Bans an address after c2s_max_auth_failures failed logins, for
  # c2s_auth_ban_lifetime (default 20 failures, 1 hour): the address is the
  # balancer's unless the PROXY protocol tells the client's.
  mod_fail2ban:${fail2ban === "{}" ? " {}" : fail2ban}
  mod_ping: {}
  mod_roster: {}
  mod_stream_mgmt: {}
  mod_version:
    show_os: false
`;
}

/**
 * A PROXY protocol v2 LOCAL header ("use the connection's own addresses"),
 * with an AF_INET address block of 12 zero bytes that a receiver discards.
 * Not the usual empty one: ejabberd 23.01 reads the address block with
 * gen_tcp:recv(Socket, Length), and a length of 0 means "whatever has
 * arrived", which swallows the stream header sent after it.
 */
const PROXY_V2_LOCAL = Buffer.concat([
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x11, 0x00, 0x0c]),
  Buffer.alloc(12),
]);

/** One attempt: open a c2s stream (after a LOCAL PROXY header if `proxy`) and wait for <stream:features>. */
function probe(addr: HostPort, domain: string, timeoutMs: number, proxy: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = "";
    const socket = net.connect(addr.port, addr.host);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`no stream features from ${addr.host}:${addr.port}`)), timeoutMs);
    socket.on("connect", () => {
      if (proxy) socket.write(PROXY_V2_LOCAL);
      socket.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'>`);
    });
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      if (text.includes("</stream:features>")) done();
    });
    socket.on("error", (err) => done(err));
    socket.on("close", () => done(new Error(`closed before features: ${text}`)));
  });
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

class Node implements EjabberdNode {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly logFile: string;
  readonly configFile: string;
  private readonly consoleFile: string;
  private readonly spool: string;
  private readonly cookie = randomBytes(16).toString("hex");
  readonly erlangNode: string;

  constructor(
    readonly id: string,
    readonly dir: string,
    readonly domain: string,
    readonly internal: HostPort,
    readonly external: HostPort,
    readonly proxy: HostPort | undefined,
    /** The Erlang distribution port, on internal.host: the node listens there, ctl() dials it. */
    private readonly distPort: number,
    private readonly readyTimeout: number,
  ) {
    this.logFile = path.join(dir, "logs", "ejabberd.log");
    this.configFile = path.join(dir, "ejabberd.yml");
    this.consoleFile = path.join(dir, "console.log");
    this.spool = path.join(dir, "spool");
    this.erlangNode = `xmpp-lb-${id}-${randomBytes(3).toString("hex")}@${internal.host}`;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  log(): string {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }

  /** The environment ejabberdctl exports for the VM, all pointed into the node's dir. */
  private env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: this.dir, // no ~/.erlang.cookie is read or written (the cookie is given), but be sure
      ERL_LIBS,
      EJABBERD_CONFIG_PATH: this.configFile,
      EJABBERD_LOG_PATH: this.logFile,
      CONTRIB_MODULES_PATH: path.join(this.dir, "modules"),
      CONTRIB_MODULES_CONF_DIR: path.join(this.dir, "modules"),
      ERL_CRASH_DUMP: path.join(this.dir, "logs", "erl_crash.dump"),
      ERL_CRASH_DUMP_BYTES: "0",
    };
    delete env.EJABBERD_PID_PATH;
    if (existsSync(INETRC)) env.ERL_INETRC = INETRC;
    return env;
  }

  /** Erlang distribution without epmd: this node's port is fixed, and so is the one dialed. */
  private distArgs(): string[] {
    return ["-setcookie", this.cookie, "-erl_epmd_port", String(this.distPort), "-start_epmd", "false"];
  }

  ctl(args: string[]): Promise<string> {
    return this.ctlAll([args]);
  }

  /**
   * Runs ejabberdctl commands against this node in one hidden Erlang VM (each
   * boots in ~0.4 s): for each, the RPC ejabberdctl makes,
   * ejabberd_ctl:process(Args) on the node, which prints to this VM's stdout.
   * Fails unless every command returns status 0.
   */
  async ctlAll(commands: string[][]): Promise<string> {
    const name = `ctl-${randomBytes(4).toString("hex")}@${this.internal.host}`;
    const erlString = (s: string): string => `"${s.replace(/[\\"]/g, "\\$&")}"`;
    const list = `[${commands.map((args) => `[${args.map(erlString).join(",")}]`).join(",")}]`;
    const script =
      `Node = '${this.erlangNode}', ` +
      `Codes = [case rpc:call(Node, ejabberd_ctl, process, [Args], 30000) of ` +
      `C when is_integer(C) -> C; Other -> io:format("~p: ~p~n", [Args, Other]), 3 end || Args <- ${list}], ` +
      `halt(lists:max([0 | Codes])).`;
    const argv = ["-name", name, ...this.distArgs(), "-dist_listen", "false", "-hidden", "-noinput", "-eval", script];
    try {
      const { stdout } = await execFileP(ERL, argv, { cwd: this.dir, env: this.env(), timeout: 30000 });
      return stdout;
    } catch (err) {
      // Not err.message: it holds the whole command line, passwords and cookie included.
      const e = err as { code?: number | string; signal?: string; stdout?: string; stderr?: string };
      const what = commands.map((c) => c[0]).join(", ");
      throw new Error(`ejabberdctl ${what} on ${this.id} failed (${e.signal ?? `exit ${e.code}`}):\n${e.stdout ?? ""}${e.stderr ?? ""}`);
    }
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.id} is already running`);
    const out = openSync(this.consoleFile, "a");
    // What `ejabberdctl foreground` runs (erl execs beam.smp: the child's pid is the VM's).
    const args = [
      "-name", this.erlangNode,
      ...this.distArgs(),
      "-kernel", "inet_dist_use_interface", `{${this.internal.host.split(".").join(",")}}`,
      "+K", "true",
      "-noinput",
      "-mnesia", "dir", JSON.stringify(this.spool),
      "-s", "ejabberd",
    ];
    const child = spawn(ERL, args, { cwd: this.dir, env: this.env(), stdio: ["ignore", out, out] });
    closeSync(out);
    this.child = child;
    let gone = false;
    this.exited = tracked(child).then(() => {
      gone = true;
      if (this.child === child) this.child = null;
    });
    child.once("error", () => {}); // ENOENT etc. surfaces as an early exit below

    const deadline = Date.now() + this.readyTimeout;
    let last: unknown = null;
    for (;;) {
      if (gone) break;
      try {
        await probe(this.internal, this.domain, 1000, false);
        await probe(this.external, this.domain, 1000, false);
        if (this.proxy !== undefined) await probe(this.proxy, this.domain, 1000, true);
        return;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) break;
      await sleep(100);
    }
    await this.kill("SIGKILL");
    throw new Error(
      `ejabberd node ${this.id} (${this.internal.host}:${this.internal.port}, ${this.external.host}:${this.external.port}) ` +
        `${gone ? "exited" : "never became ready"}: ${String(last)}\n--- ${this.logFile}\n${tail(this.logFile)}\n--- ${this.consoleFile}\n${tail(this.consoleFile, 10)}`,
    );
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.child?.kill(signal);
    await this.exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill("SIGTERM"); // the Erlang VM runs init:stop() on SIGTERM
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

export async function startEjabberdCluster(opts: EjabberdClusterOptions = {}): Promise<EjabberdCluster> {
  const count = opts.count ?? 2;
  const domain = opts.domain ?? "lb.test";
  const dir = await mkdtemp(path.join(opts.dir ?? os.tmpdir(), "xmpp-lb-ejabberd-"));
  const keep = opts.keepDir ?? process.env.XMPP_LB_KEEP_EJABBERD === "1";
  const nodes: Node[] = [];
  hookExit();
  if (!keep) liveDirs.add(dir);

  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    if (!keep) await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  try {
    const tlsPem = Buffer.concat([readFileSync(path.join(TLS_DIR, "server.pem")), Buffer.from("\n"), readFileSync(path.join(TLS_DIR, "server.key"))]);
    for (let i = 1; i <= count; i++) {
      const id = `n${i}`;
      const nodeDir = path.join(dir, id);
      await mkdir(path.join(nodeDir, "spool"), { recursive: true });
      await mkdir(path.join(nodeDir, "logs"));
      await writeFile(path.join(nodeDir, "tls.pem"), tlsPem, { mode: 0o600 });
      const internalHost = `127.0.3.${i}`;
      const internal = { host: internalHost, port: await freePort(internalHost) };
      const external = { host: `127.0.4.${i}`, port: await freePort(`127.0.4.${i}`) };
      const proxy = opts.proxyListener ? { host: internalHost, port: await freePort(internalHost) } : undefined;
      const distPort = await freePort(internalHost);
      const node = new Node(id, nodeDir, domain, internal, external, proxy, distPort, opts.readyTimeout ?? 20000);
      const params = { id, dir: nodeDir, domain, internal, external, proxy, maxAuthFailures: opts.maxAuthFailures, fail2banExempt: opts.fail2banExempt };
      await writeFile(node.configFile, configFor(params));
      nodes.push(node);
    }
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await stop();
    throw err;
  }

  const cluster: EjabberdCluster = {
    domain,
    nodes,
    dir,
    async register(user, password) {
      await Promise.all(nodes.map((n) => n.ctl(["register", user, domain, password])));
    },
    stop,
  };
  try {
    // One ctl VM per node for all the accounts.
    const users = opts.users ?? [];
    if (users.length > 0) await Promise.all(nodes.map((n) => n.ctlAll(users.map(([user, password]) => ["register", user, domain, password]))));
  } catch (err) {
    await stop();
    throw err;
  }
  return cluster;
}

/**
 * `--node` values for a cluster's nodes: internal is the balancer-facing
 * listener, or with `via: "proxy"` the `use_proxy_protocol` one (then the
 * balancer must send PROXY headers: --backend-proxy-protocol, or `proxy`
 * here, which adds `proxy=<version>` to each node).
 */
export function nodeFlags(nodes: readonly EjabberdNode[], opts: { via?: "internal" | "proxy"; proxy?: "v1" | "v2" } = {}): string[] {
  return nodes.map((n) => {
    const internal = opts.via === "proxy" ? n.proxy : n.internal;
    if (internal === undefined) throw new Error(`${n.id} has no PROXY protocol listener (proxyListener)`);
    const proxy = opts.proxy === undefined ? "" : `,proxy=${opts.proxy}`;
    return `id=${n.id},internal=${internal.host}:${internal.port},external=${n.external.host}:${n.external.port}${proxy}`;
  });
}
