// Test fixture: N real ejabberd nodes (Debian's package: 23.01 in bookworm,
// 24.12 in bookworm-backports; the recipe is the same) on loopback, standing
// in for an XMPP cluster behind the balancer, as prosody.ts does with Prosody.
// Two kinds:
//
// * independent nodes (the default): each has its own Erlang node name, its
//   own random cookie and its own Mnesia spool, and register() creates every
//   account on every node with the same password, so any node can log any
//   user in, but a user on one node cannot reach a user on another;
// * one real cluster (`clustered: true`): the nodes share one cookie and
//   Mnesia: nodes 2..N join node 1 one after the other (`join_cluster`, which
//   restarts ejabberd on the joining node), accounts are registered once, and
//   sessions, rosters, offline messages and MUC rooms are the cluster's. A node
//   restarted on its own spool rejoins by itself.
//
// Independent node i (1-based) listens for c2s on
//   internal 127.0.3.i:<free port>  (what the balancer dials / probes; STARTTLS offered, not required)
//   external 127.0.4.i:<free port>  (what see-other-host points clients at; STARTTLS required)
//   proxy    127.0.3.i:<free port>  (optional: `use_proxy_protocol: true`, for --backend-proxy-protocol)
// (other prefixes with the `network` option).
// A clustered node i uses 127.0.6.i for all three and for its Erlang
// distribution, so its own address names it. Every node names itself "n<i>"
// in disco#info (mod_disco's `name` option: the server identity's name), so
// clients.ts's nodeOf() tells ejabberd nodes apart too.
//
// How a node runs: not through /usr/sbin/ejabberdctl, which as root re-runs
// itself as the `ejabberd` user through su (who could not read a root-owned
// temp dir, and the su in between would keep the test from owning the Erlang
// process), refuses any other user, and leans on epmd. Instead `erl` is
// started directly with what `ejabberdctl foreground` passes it (`-mnesia dir
// ... -s ejabberd -noinput`, Debian's ERL_LIBS, the config and log paths in
// EJABBERD_CONFIG_PATH / EJABBERD_LOG_PATH), everything pointed into the
// node's temp dir, plus `-erl_epmd_port PORT -start_epmd false` (what
// ejabberdctl does with ERL_DIST_PORT): the Erlang distribution listens on the
// node's own address at PORT only and every node is dialed there (in a cluster
// all nodes use the same PORT, each on its own address), so no epmd is needed
// or started, and ERL_EPMD_PORT names a closed port so that nothing registers
// with an epmd that runs anyway (the package's). `ejabberdctl COMMAND ...` is
// the RPC ejabberdctl makes, ejabberd_ctl:process([COMMAND, ...]), from a
// hidden `erl` with the node's cookie (see ctlAll()). This works as root and
// as any other user, and writes nothing outside the temp dir
// (/etc/ejabberd/inetrc is only read). Stop the package's own ejabberd first:
// its wildcard listeners hold port 5222 on every address. A node is ready in
// ~1.5 s alone; two at once, with their accounts, take 3-4 s on a 2-CPU
// machine; a three-node cluster, joined, 11-13 s.

import { hookExit, tracked, liveDirs } from "./children.js";
import { freePort, sleep } from "./wait.js";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from "node:fs";
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
  /** Whether the Erlang VM is running (it may still be booting). */
  readonly running: boolean;
  internal: HostPort;
  external: HostPort;
  /** The c2s listener with `use_proxy_protocol: true` (option `proxyListener`), else undefined. */
  proxy: HostPort | undefined;
  /** With `websocket: true`: ejabberd_http_ws's ws:// URLs on the internal and the external address, else undefined. */
  websocket?: { internal: string; external: string };
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
  /** Resolves once every listener serves stream features again (after join_cluster restarted ejabberd). */
  ready(): Promise<void>;
  /** The Erlang nodes this node's Mnesia runs with, itself included (`list_cluster`). */
  clusterNodes(): Promise<string[]>;
  /**
   * Ends every client session on this node with `<system-shutdown/>` while
   * the node runs, each through its usual end (out of the session table, its
   * unacknowledged and queued stanzas routed again); resolves with how many.
   * Stopping the node instead ends them racing its own shutdown (see the
   * README: "In front of a real cluster").
   */
  endSessions(): Promise<number>;
}

export interface EjabberdCluster {
  domain: string;
  nodes: EjabberdNode[];
  /** One Mnesia cluster (option `clustered`), or independent nodes. */
  clustered: boolean;
  /** The temp dir holding every node's config, spool and logs. */
  dir: string;
  /** Creates an account (`ejabberdctl register`): once in a cluster, else on every node. */
  register(user: string, password: string): Promise<void>;
  /**
   * Clustered: resolves once every running node's Mnesia runs with every other
   * running node and has its tables loaded. A room created before that could be
   * created twice (once per side), so MUC tests wait for it after a (re)start.
   */
  converged(timeoutMs?: number): Promise<void>;
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
  /** One real ejabberd cluster (shared Mnesia) on 127.0.6.i, instead of independent nodes. */
  clustered?: boolean;
  /**
   * Address prefixes of independent nodes: node i listens on `${internal}.i`
   * and `${external}.i` (default 127.0.3 and 127.0.4). Not with `clustered`.
   */
  network?: { internal: string; external: string };
  /**
   * Modern logins, as ejabberd 24.12 has them. SASL2 (XEP-0388) and Bind2
   * (XEP-0386, with XEP-0198 enable inline from mod_stream_mgmt) are built in
   * and on, but offered only to a stream whose header has a `from` naming a
   * user (xmpp_stream_in keeps SASL2 only for such a stream), and on a
   * plaintext stream only with the listener's `allow_unencrypted_sasl2: true`,
   * which this sets on the internal listener. FAST (XEP-0484) is mod_auth_fast,
   * not in this config otherwise: this enables it. It advertises
   * HT-SHA-256-NONE, -UNIQ, -EXPR and -ENDP inline in SASL2 on every stream
   * that gets SASL2 (plaintext too), keeps a token per account and user-agent
   * id (sha256 of the <user-agent id>), issues one for any <request-token/>
   * whatever mechanism it names, and lets it live 30 days (token_lifetime).
   */
  modern?: boolean;
  /**
   * Offer SCRAM-*-PLUS, disabled by default (see disable_sasl_mechanisms in
   * the config). ejabberd 24.12 offers -PLUS on every encrypted stream
   * (SASL1 and SASL2) with the channel bindings it can compute: tls-unique
   * (TLS 1.2), tls-exporter (TLS 1.3) and tls-server-end-point (from the
   * certfile: SHA-256 of its DER for a SHA-1/MD5/SHA-256 signature, else the
   * signature's hash), listed in XEP-0440 <sasl-channel-binding/>. There is
   * no per-type switch: disable_sasl_mechanisms is the only knob.
   */
  channelBinding?: boolean;
  /**
   * Serve XMPP over WebSocket (RFC 7395): an ejabberd_http listener with
   * ejabberd_http_ws at /xmpp-websocket, plain HTTP, on the internal and on
   * the external address (a free port each): node.websocket. With `modern`,
   * the internal one has `allow_unencrypted_sasl2: true` (ejabberd_http_ws
   * passes it to the c2s), as the internal c2s listener does.
   */
  websocket?: boolean;
}

const ERL = process.env.EJABBERD_ERL_BIN ?? "/usr/bin/erl";
/** Where Debian's ejabberd-<version>/ebin lives (ejabberd-24.12 from bookworm-backports) (ejabberdctl's ERL_LIBS); the erlang-p1-* libraries are in Erlang's own lib dir. */
const ERL_LIBS = process.env.EJABBERD_ERL_LIBS ?? "/usr/lib/x86_64-linux-gnu";
const INETRC = "/etc/ejabberd/inetrc";
const TLS_DIR = fileURLToPath(new URL("../../examples/tls/", import.meta.url));
const execFileP = promisify(execFile);

/** Whether ejabberd can run here as this file runs it: `erl`, and an ejabberd-* library dir under ERL_LIBS (Debian's `ejabberd` package). */
export function ejabberdInstalled(): boolean {
  try {
    return existsSync(ERL) && readdirSync(ERL_LIBS).some((d) => d.startsWith("ejabberd-"));
  } catch {
    return false;
  }
}

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
  modern: boolean;
  channelBinding: boolean;
  websocket?: { internal: HostPort; external: HostPort };
}

function configFor(o: ConfigParams): string {
  const p = (f: string): string => y(path.join(o.dir, f));
  const listener = (addr: HostPort, extra: string): string => `  -
    ip: ${y(addr.host)}
    port: ${addr.port}
    module: ejabberd_c2s
    starttls: true
${extra}`;
  const http = (addr: HostPort, extra: string): string => `  -
    ip: ${y(addr.host)}
    port: ${addr.port}
    module: ejabberd_http
${extra}    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
`;
  const websocket =
    o.websocket === undefined
      ? ""
      : `  # XMPP over WebSocket (ejabberd_http_ws), plain ws:// on loopback.\n${http(o.websocket.internal, o.modern ? "    allow_unencrypted_sasl2: true\n" : "")}${http(o.websocket.external, "")}`;
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
# mechanism unless a test asks for it. A client that can bind, offered no
# -PLUS by the balancer, sends the gs2 flag 'y': ejabberd 24.12 (xmpp 1.9.4's
# SCRAM) refuses it ("Invalid channel binding") on every TLS stream, -PLUS
# disabled or not, and on a plaintext one too unless its listener has
# allow_unencrypted_sasl2: true (only then are bindings "not available", the
# one case where 'y' passes); 'n' always passes. The balancer does not speak
# X-OAUTH2; DIGEST-MD5 is obsolete (RFC 6331).
disable_sasl_mechanisms: [${o.channelBinding ? "" : `"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS", `}"X-OAUTH2", "DIGEST-MD5"]
${exempt}
listen:
  # Balancer-facing: STARTTLS offered but not required, so the balancer may
  # talk plaintext on this (trusted, internal) address${o.modern ? ", SASL2 included" : ""}.
${listener(o.internal, o.modern ? "    allow_unencrypted_sasl2: true\n" : "")}  # Client-facing (where see-other-host sends clients): TLS required.
${listener(o.external, "    starttls_required: true\n")}${o.proxy === undefined ? "" : `  # Behind --backend-proxy-protocol: the first bytes are a PROXY header (v1 or v2).\n${listener(o.proxy, "    use_proxy_protocol: true\n")}`}${websocket}
modules:
  mod_admin_extra: {}
${o.modern ? "  # XEP-0484 FAST tokens (HT-SHA-256-*), inline in SASL2.\n  mod_auth_fast: {}\n" : ""}  mod_disco:
    # The server identity's name in disco#info: how tests tell nodes apart.
    name: ${y(o.id)}
  # Bans an address after c2s_max_auth_failures failed logins, for
  # c2s_auth_ban_lifetime (default 20 failures, 1 hour): the address is the
  # balancer's unless the PROXY protocol tells the client's.
  mod_fail2ban:${fail2ban === "{}" ? " {}" : fail2ban}
  # Rooms on conference.<domain>; in a cluster a room lives on one node and its occupants may be on any.
  mod_muc: {}
  mod_offline: {}
  mod_ping: {}
  mod_roster: {}
  # A session that ends without being resumed (its node stopped, or resumption
  # timed out) routes the stanzas its client never acknowledged again instead of
  # bouncing them: to the same resource logged in anew (on any node), else to
  # offline storage (mod_offline). The README's advice for a cluster behind the balancer.
  mod_stream_mgmt:
    resend_on_timeout: if_offline
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

/** How a node's Erlang VM takes part in the distribution. */
interface Distribution {
  /** The port every node of the run listens on (each on its own address) and dials: no epmd. */
  port: number;
  /** Shared by a cluster's nodes; each independent node has its own. */
  cookie: string;
  /** A port nothing listens on, for ERL_EPMD_PORT: registering with an epmd fails quietly. */
  noEpmdPort: number;
}

/** What starts one node: where it lives and listens (as its config has it), and how it joins Erlang distribution. */
interface NodeParams extends Omit<ConfigParams, "maxAuthFailures" | "fail2banExempt" | "modern" | "channelBinding" | "websocket"> {
  dist: Distribution;
  readyTimeout: number;
}

class Node implements EjabberdNode {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly id: string;
  readonly dir: string;
  readonly domain: string;
  readonly internal: HostPort;
  readonly external: HostPort;
  readonly proxy: HostPort | undefined;
  websocket?: { internal: string; external: string };
  readonly logFile: string;
  readonly configFile: string;
  private readonly consoleFile: string;
  private readonly spool: string;
  private readonly dist: Distribution;
  private readonly readyTimeout: number;
  readonly erlangNode: string;

  constructor(p: NodeParams) {
    ({ id: this.id, dir: this.dir, domain: this.domain, internal: this.internal, external: this.external, proxy: this.proxy, dist: this.dist, readyTimeout: this.readyTimeout } = p);
    this.logFile = path.join(p.dir, "logs", "ejabberd.log");
    this.configFile = path.join(p.dir, "ejabberd.yml");
    this.consoleFile = path.join(p.dir, "console.log");
    this.spool = path.join(p.dir, "spool");
    // The distribution listens on the internal address: the node's name says where to dial it.
    this.erlangNode = `xmpp-lb-${p.id}-${randomBytes(3).toString("hex")}@${p.internal.host}`;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  get running(): boolean {
    return this.child !== null;
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
      ERL_EPMD_PORT: String(this.dist.noEpmdPort),
    };
    delete env.EJABBERD_PID_PATH;
    if (existsSync(INETRC)) env.ERL_INETRC = INETRC;
    return env;
  }

  /** Erlang distribution without epmd: this node's port is fixed, and so is the one dialed. */
  private distArgs(): string[] {
    return ["-setcookie", this.dist.cookie, "-erl_epmd_port", String(this.dist.port), "-start_epmd", "false"];
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
    const erlString = (s: string): string => `"${s.replace(/[\\"]/g, "\\$&")}"`;
    const list = `[${commands.map((args) => `[${args.map(erlString).join(",")}]`).join(",")}]`;
    const script =
      `Codes = [case rpc:call(Node, ejabberd_ctl, process, [Args], 30000) of ` +
      `C when is_integer(C) -> C; Other -> io:format("~p: ~p~n", [Args, Other]), 3 end || Args <- ${list}], ` +
      `halt(lists:max([0 | Codes])).`;
    return this.remote(script, `ejabberdctl ${commands.map((c) => c[0]).join(", ")}`);
  }

  async endSessions(): Promise<number> {
    const script =
      `Shutdown = rpc:call(Node, xmpp, serr_system_shutdown, []), ` +
      `Sessions = rpc:call(Node, ejabberd_sm, dirty_get_my_sessions_list, []), ` +
      // #session.sid is {Time, Pid}; a stream error sent ends the stream.
      `[rpc:call(Node, ejabberd_c2s, send, [element(2, element(2, S)), Shutdown]) || S <- Sessions], ` +
      `io:format("~p~n", [length(Sessions)]), halt(0).`;
    return Number((await this.remote(script, "ending the node's sessions")).trim());
  }

  async clusterNodes(): Promise<string[]> {
    return (await this.ctl(["list_cluster"])).split("\n").map((l) => l.trim().replace(/^'|'$/g, "")).filter((l) => l !== "");
  }

  /**
   * Runs `script` (Erlang expressions, `Node` bound to this node's name) in a
   * hidden Erlang VM that dials this node (or, in a cluster, any node) with
   * its cookie, and resolves with what it printed; it must halt(0).
   */
  async remote(script: string, what: string): Promise<string> {
    const name = `ctl-${randomBytes(4).toString("hex")}@${this.internal.host}`;
    const argv = ["-name", name, ...this.distArgs(), "-dist_listen", "false", "-hidden", "-noinput", "-eval", `Node = '${this.erlangNode}', ${script}`];
    try {
      const { stdout } = await execFileP(ERL, argv, { cwd: this.dir, env: this.env(), timeout: 40000 });
      return stdout;
    } catch (err) {
      // Not err.message: it holds the whole command line, passwords and cookie included.
      const e = err as { code?: number | string; signal?: string; stdout?: string; stderr?: string };
      throw new Error(`${what} on ${this.id} failed (${e.signal ?? `exit ${e.code}`}):\n${e.stdout ?? ""}${e.stderr ?? ""}`);
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
    this.exited = tracked(child).then(() => {
      if (this.child === child) this.child = null;
    });
    child.once("error", () => {}); // ENOENT etc. surfaces as an early exit below
    try {
      await this.ready();
    } catch (err) {
      await this.kill("SIGKILL");
      throw err;
    }
  }

  async ready(): Promise<void> {
    const deadline = Date.now() + this.readyTimeout;
    let last: unknown = null;
    for (;;) {
      if (this.child === null) break;
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
    throw new Error(
      `ejabberd node ${this.id} (${this.internal.host}:${this.internal.port}, ${this.external.host}:${this.external.port}) ` +
        `${this.child === null ? "exited" : "never became ready"}: ${String(last)}\n--- ${this.logFile}\n${tail(this.logFile)}\n--- ${this.consoleFile}\n${tail(this.consoleFile, 10)}`,
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

/** A port free on every one of `hosts` now: a cluster's nodes all listen for the distribution on it, each on its own address. */
async function portFreeOnAll(hosts: readonly string[]): Promise<number> {
  const bindable = (host: string, port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const srv = net.createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, host, () => srv.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort(hosts[0]);
    if ((await Promise.all(hosts.slice(1).map((h) => bindable(h, port)))).every(Boolean)) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(", ")}`);
}

export async function startEjabberdCluster(opts: EjabberdClusterOptions = {}): Promise<EjabberdCluster> {
  const count = opts.count ?? 2;
  const domain = opts.domain ?? "lb.test";
  const clustered = opts.clustered ?? false;
  if (clustered && opts.network !== undefined) throw new Error("a clustered ejabberd lives on 127.0.6.i: no `network` option");
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

  // One hidden VM asks every running node, until each one's Mnesia runs with exactly the running nodes, then waits for their tables.
  const converged = async (timeoutMs = 30000): Promise<void> => {
    const running = nodes.filter((n) => n.running);
    if (!clustered || running.length === 0) return;
    const list = `[${running.map((n) => `'${n.erlangNode}'`).join(",")}]`;
    const script =
      `Nodes = ${list}, Want = lists:sort(Nodes), Deadline = erlang:monotonic_time(millisecond) + ${timeoutMs}, ` +
      `Views = fun() -> [catch lists:sort(rpc:call(N, mnesia, system_info, [running_db_nodes], 5000)) || N <- Nodes] end, ` +
      `Loop = fun L() -> V = Views(), case lists:all(fun(X) -> X =:= Want end, V) of true -> ok; ` +
      `false -> case erlang:monotonic_time(millisecond) > Deadline of true -> io:format("not converged: ~p~n", [V]), halt(3); false -> timer:sleep(100), L() end end end, ` +
      `Loop(), ` +
      `Loads = [{N, rpc:call(N, mnesia, wait_for_tables, [rpc:call(N, mnesia, system_info, [local_tables]), ${timeoutMs}], ${timeoutMs + 5000})} || N <- Nodes], ` +
      `case [L || {_, R} = L <- Loads, R =/= ok] of [] -> halt(0); Bad -> io:format("tables not loaded: ~p~n", [Bad]), halt(3) end.`;
    await running[0]!.remote(script, "waiting for the cluster to converge");
  };

  try {
    const tlsPem = Buffer.concat([readFileSync(path.join(TLS_DIR, "server.pem")), Buffer.from("\n"), readFileSync(path.join(TLS_DIR, "server.key"))]);
    const hosts = (subnet: number): string[] => Array.from({ length: count }, (_, i) => `127.0.${subnet}.${i + 1}`);
    const noEpmdPort = await freePort();
    const sharedDist = clustered ? { port: await portFreeOnAll(hosts(6)), cookie: randomBytes(16).toString("hex"), noEpmdPort } : undefined;
    for (let i = 1; i <= count; i++) {
      const id = `n${i}`;
      const nodeDir = path.join(dir, id);
      await mkdir(path.join(nodeDir, "spool"), { recursive: true });
      await mkdir(path.join(nodeDir, "logs"));
      await writeFile(path.join(nodeDir, "tls.pem"), tlsPem, { mode: 0o600 });
      const prefix = opts.network ?? { internal: "127.0.3", external: "127.0.4" };
      const internalHost = clustered ? `127.0.6.${i}` : `${prefix.internal}.${i}`;
      const externalHost = clustered ? internalHost : `${prefix.external}.${i}`;
      const internal = { host: internalHost, port: await freePort(internalHost) };
      const external = { host: externalHost, port: await freePort(externalHost) };
      const proxy = opts.proxyListener ? { host: internalHost, port: await freePort(internalHost) } : undefined;
      const dist = sharedDist ?? { port: await freePort(internalHost), cookie: randomBytes(16).toString("hex"), noEpmdPort };
      const node = new Node({ id, dir: nodeDir, domain, internal, external, proxy, dist, readyTimeout: opts.readyTimeout ?? 20000 });
      const websocket = opts.websocket ? { internal: { host: internalHost, port: await freePort(internalHost) }, external: { host: externalHost, port: await freePort(externalHost) } } : undefined;
      if (websocket !== undefined) {
        node.websocket = { internal: `ws://${websocket.internal.host}:${websocket.internal.port}/xmpp-websocket`, external: `ws://${websocket.external.host}:${websocket.external.port}/xmpp-websocket` };
      }
      const params = {
        id,
        dir: nodeDir,
        domain,
        internal,
        external,
        proxy,
        maxAuthFailures: opts.maxAuthFailures,
        fail2banExempt: opts.fail2banExempt,
        modern: opts.modern ?? false,
        channelBinding: opts.channelBinding ?? false,
        websocket,
      };
      await writeFile(node.configFile, configFor(params));
      nodes.push(node);
    }
    await Promise.all(nodes.map((n) => n.start()));
    if (clustered) {
      // One at a time: join_cluster stops ejabberd on the joining node, copies the schema and tables, and starts it again.
      for (const node of nodes.slice(1)) {
        await node.ctl(["join_cluster", nodes[0]!.erlangNode]);
        await node.ready();
      }
      await converged();
    }
  } catch (err) {
    await stop();
    throw err;
  }

  // A cluster's accounts are its Mnesia's: registered once. Independent nodes each need their own.
  const registrars = clustered ? nodes.slice(0, 1) : nodes;
  const cluster: EjabberdCluster = {
    domain,
    nodes,
    clustered,
    dir,
    async register(user, password) {
      const node = clustered ? nodes.find((n) => n.running) : undefined;
      await Promise.all((node ? [node] : registrars).map((n) => n.ctl(["register", user, domain, password])));
    },
    converged,
    stop,
  };
  try {
    // One ctl VM per node for all the accounts.
    const users = opts.users ?? [];
    if (users.length > 0) await Promise.all(registrars.map((n) => n.ctlAll(users.map(([user, password]) => ["register", user, domain, password]))));
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
 * here, which adds `proxy=<version>` to each node). Nodes with WebSocket
 * (option `websocket`) get `ws=` and `ws-internal=`.
 */
export function nodeFlags(nodes: readonly EjabberdNode[], opts: { via?: "internal" | "proxy"; proxy?: "v1" | "v2" } = {}): string[] {
  return nodes.map((n) => {
    const internal = opts.via === "proxy" ? n.proxy : n.internal;
    if (internal === undefined) throw new Error(`${n.id} has no PROXY protocol listener (proxyListener)`);
    const proxy = opts.proxy === undefined ? "" : `,proxy=${opts.proxy}`;
    const ws = n.websocket === undefined ? "" : `,ws=${n.websocket.external},ws-internal=${n.websocket.internal}`;
    return `id=${n.id},internal=${internal.host}:${internal.port},external=${n.external.host}:${n.external.port}${proxy}${ws}`;
  });
}
