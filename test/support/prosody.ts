// Test fixture: N real Prosody 13 nodes (Debian's bookworm-backports package)
// on loopback, standing in for an XMPP cluster behind the balancer. They do
// not really cluster: each node has its own storage (accounts, and with
// `modern` its FAST tokens), and register() creates every account on every
// node with the same password, so any node can log any user in.
//
// Node i (1-based) listens for c2s on
//   internal 127.0.1.i:<free port>  (what the balancer dials / probes)
//   external 127.0.2.i:5222         (what see-other-host points clients at)
// (other prefixes with the `network` option) and names itself "n<i>" in
// disco#info (Prosody's global `name` option, read by mod_disco), which is how
// tests learn where a client landed.
//
// Modern logins (`modern: true`) come from prosody-modules (mod_sasl2,
// mod_sasl2_bind2, mod_sasl2_sm, mod_sasl2_fast, as of its 2025-04 snapshot in
// bookworm-backports). What Prosody 13.0.1 does with them, read in its sources:
// * SASL2 (<authentication xmlns='urn:xmpp:sasl:2'>) is offered wherever SASL1
//   is (here plaintext too: c2s_require_encryption = false), with the same
//   mechanisms less disable_sasl_mechanisms.
// * FAST (<fast xmlns='urn:xmpp:fast:0'> inline in SASL2) is advertised only
//   when the stream header's `from` names a user (mod_sasl2_fast's
//   advertise-sasl-features hook takes the username from jid.node(from); no
//   `from`, no FAST; xmpp.js 0.14 sends `from` only on TLS streams). Token
//   mechanisms: HT-SHA-256-NONE, -UNIQ (tls-unique), -EXPR (tls-exporter),
//   -ENDP (tls-server-end-point); each is listed only if the stream has its
//   binding, as mod_sasl2's own SASL handler sees it: plaintext gets -NONE,
//   TLS 1.2 -NONE and -UNIQ, TLS 1.3 -NONE and -EXPR, and -ENDP never (that
//   handler has no tls-server-end-point, tls_server_end_point_hash or not).
//   A token is stored per account under sha256(the <user-agent id>): a token
//   login must send the same user-agent id as the login that asked for it
//   (and the token is bound to the mechanism it was asked for). Tokens live
//   21 days (sasl2_fast_token_ttl) and are replaced after a day's use.
// * Prosody 13 also offers OAUTHBEARER (SASL1 and SASL2) by default.

import { hookExit, tracked, liveDirs } from "./children.js";
import { freePort } from "./wait.js";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
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

export interface ProsodyNode {
  /** "n1", "n2", ...: also the disco#info identity name of the node. */
  id: string;
  internal: HostPort;
  external: HostPort;
  /** With `websocket: true`: mod_websocket's URLs on the internal and the external address (same port). */
  websocket?: { internal: string; external: string };
  /** Pid of the running process (0 while stopped). */
  readonly pid: number;
  /** Prosody's own log (debug level); console output goes next to it in console.log. */
  logFile: string;
  configFile: string;
  /** SIGTERM (graceful), wait for exit; SIGKILL after a few seconds. */
  stop(): Promise<void>;
  /** Send a signal (default SIGKILL) and wait for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** (Re)start with the same config and data; resolves once both addresses serve stream features. */
  start(): Promise<void>;
}

export interface ProsodyCluster {
  domain: string;
  nodes: ProsodyNode[];
  /** The temp dir holding every node's config, data and logs. */
  dir: string;
  /** Creates (or resets the password of) an account on every node. */
  register(user: string, password: string): Promise<void>;
  /** Stops all nodes and removes the temp dir. */
  stop(): Promise<void>;
}

export interface ProsodyClusterOptions {
  count?: number;
  domain?: string;
  users?: Array<[string, string]>;
  /** Parent directory for the cluster's temp dir (default os.tmpdir()). */
  dir?: string;
  /** Keep the temp dir (logs) on stop(). Also enabled by XMPP_LB_KEEP_PROSODY=1. */
  keepDir?: boolean;
  /** Extra Lua appended to every node's global section. */
  extraConfig?: string;
  /**
   * Port of the external addresses (default 5222, what clients dial after a
   * redirect). 0 picks a free port per node, so clusters can run side by side.
   */
  externalPort?: number;
  /** Serve XMPP over WebSocket (Prosody's mod_websocket, RFC 7395) at /xmpp-websocket over plain HTTP on a free port per node. */
  websocket?: boolean;
  /** Per-node readiness timeout in ms (default 15000). */
  readyTimeout?: number;
  /**
   * Address prefixes: node i listens on `${internal}.i` and `${external}.i`
   * (default 127.0.1 and 127.0.2), so a test's cluster can stay clear of others'.
   */
  network?: { internal: string; external: string };
  /**
   * Modern logins: XEP-0388 SASL2, XEP-0386 Bind2 (with XEP-0198 enable and
   * carbons inline), XEP-0198 resume inline in SASL2, and XEP-0484 FAST tokens
   * (see the header comment for when FAST is advertised).
   */
  modern?: boolean;
  /**
   * Offer SCRAM-*-PLUS (channel binding) on TLS streams; by default they are
   * disabled, since TLS ending at the balancer cannot bind end to end.
   * Prosody 13 offers -PLUS only on encrypted c2s streams, in SASL1 and SASL2,
   * and only where tls-unique (TLS 1.2) or tls-exporter (TLS 1.3) is there
   * (LuaSec 1.2 gives both); tls-server-end-point, with
   * tlsServerEndPointHash, is accepted in a client's gs2 header
   * (`p=tls-server-end-point`) but never on its own gets -PLUS listed. It
   * works over SASL2 too: mod_sasl2 builds the offer with a handler of its
   * own, but authenticates with mod_saslauth's (which replaces it on the
   * session), and that one has it. The XEP-0440 <sasl-channel-binding/>
   * stream feature (mod_saslauth's) lists the types. A client's gs2 `y` flag
   * ("I can bind, you offered no -PLUS") is refused (malformed-request) on
   * every TLS stream, since bindings exist there whether -PLUS is disabled
   * or not (on plaintext it passes); `n` always passes.
   */
  channelBinding?: boolean;
  /**
   * Prosody's `tls_server_end_point_hash`: the hex hash (RFC 5929: SHA-256 for
   * a SHA-1/SHA-256 signed certificate) of the DER certificate the node's TLS
   * serves (scram-plus.ts's tlsServerEndPoint() computes it), which Prosody
   * then uses as the tls-server-end-point binding; without it there is none.
   * "auto" (read the certificate) is broken in 13.0.1: the first TLS stream
   * clears the option (mod_saslauth sets the module-wide variable to nil), so
   * later streams get no tls-server-end-point: pass hex.
   */
  tlsServerEndPointHash?: string;
  /**
   * The SCRAM hash internal_hashed stores (Prosody's `password_hash`), and so
   * the one SCRAM family offered: "SHA-1" (Prosody's default: SCRAM-SHA-1 and
   * -PLUS) or "SHA-256" (SCRAM-SHA-256 and -PLUS only; @xmpp/client, which
   * has no SCRAM-SHA-256, then uses PLAIN).
   */
  passwordHash?: "SHA-1" | "SHA-256";
  /** The certificate and key files the nodes present (default: examples/tls/server.pem, the one test balancers serve). */
  certificate?: { cert: string; key: string };
}

const PROSODY = process.env.PROSODY_BIN ?? "/usr/bin/prosody";
const PROSODYCTL = process.env.PROSODYCTL_BIN ?? "/usr/bin/prosodyctl";
const TLS_DIR = fileURLToPath(new URL("../../examples/tls/", import.meta.url));
const EXTERNAL_PORT = 5222;
const execFileP = promisify(execFile);


const lua = (s: string): string => `"${s.replace(/[\\"]/g, "\\$&").replace(/\n/g, "\\n")}"`;

const BASE_MODULES = ["disco", "roster", "saslauth", "tls", "ping", "smacks", "version", "posix"];
/** prosody-modules' SASL2 family (in /usr/lib/prosody/modules/mod_<name>/), and carbons (core) for Bind2's inline features. */
const MODERN_MODULES = ["sasl2", "sasl2_bind2", "sasl2_sm", "sasl2_fast", "carbons"];

/** mod_websocket over plain HTTP on both addresses; the balancer (or a test) stands where TLS would end. */
function websocketConfig(o: { internal: HostPort; external: HostPort }, httpPort: number): string {
  return `
http_ports = { ${httpPort} }
http_interfaces = { ${lua(o.internal.host)}, ${lua(o.external.host)} }
https_ports = { }
-- Plain ws:// on loopback: let SASL PLAIN through as if it were wss://.
consider_websocket_secure = true
`;
}

interface ConfigParams {
  id: string;
  dir: string;
  domain: string;
  internal: HostPort;
  external: HostPort;
  extra: string;
  modules: string[];
  channelBinding: boolean;
  tlsServerEndPointHash: string | undefined;
  passwordHash: "SHA-1" | "SHA-256" | undefined;
  certificate: { cert: string; key: string };
}

function configFor(o: ConfigParams): string {
  const p = (f: string): string => lua(path.join(o.dir, f));
  const disabledMechanisms = o.channelBinding ? ["DIGEST-MD5"] : ["DIGEST-MD5", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"];
  return `-- generated by test/support/prosody.ts
-- Prosody refuses to run as root (mod_posix) unless told so; prosodyctl would
-- otherwise also try to setuid to the 'prosody' user.
run_as_root = true
-- Foreground (no -D): the test owns the process. mod_posix stays loaded for the
-- pidfile and graceful SIGTERM handling.
pidfile = ${p("prosody.pid")}
data_path = ${p("data")}
-- An empty dir, so certmanager does not go looking in /etc/prosody/certs.
certificates = ${p("certs")}
log = { { levels = { min = "debug" }, to = "file", filename = ${p("prosody.log")} } }
-- Globally readable data (tests run as root, but be nice to debugging users).
umask = "022"

name = ${lua(o.id)} -- mod_disco's server identity name: how tests tell nodes apart

modules_enabled = { ${o.modules.map(lua).join(", ")} }
-- No s2s (autoloaded otherwise), no offline storage; limits/http/bosh/websocket/admin_socket are not enabled.
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }

-- Prosody has no per-interface ports: this also binds ${o.internal.host}:${o.external.port}
-- and ${o.external.host}:${o.internal.port}, which nothing else uses.
c2s_interfaces = { ${lua(o.internal.host)}, ${lua(o.external.host)} }
c2s_ports = { ${o.internal.port}, ${o.external.port} }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }

-- The balancer talks to nodes in plaintext on a trusted network by default.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
-- Prosody has no switch for channel binding: SCRAM-*-PLUS is offered over TLS
-- (tls-unique on TLS 1.2, tls-exporter on 1.3); it cannot survive a
-- TLS-terminating balancer, so it is disabled unless a test asks for it.
disable_sasl_mechanisms = { ${disabledMechanisms.map(lua).join(", ")} }
authentication = "internal_hashed"
${o.passwordHash === undefined ? "" : `password_hash = ${lua(o.passwordHash)}\n`}${o.tlsServerEndPointHash === undefined ? "" : `tls_server_end_point_hash = ${lua(o.tlsServerEndPointHash)}\n`}-- SCRAM's minimum (RFC 5802; Prosody refuses less). The default 10000 costs
-- @xmpp/client ~1.3 s per login (PBKDF2 through WebCrypto, one call per round).
default_iteration_count = 4096
${o.extra}

VirtualHost ${lua(o.domain)}
  ssl = { certificate = ${lua(o.certificate.cert)}; key = ${lua(o.certificate.key)} }
`;
}

/** Fails early (and clearly) if host:port is taken, e.g. by another cluster or a system Prosody on 0.0.0.0:5222. */
async function assertBindable(host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", (err) => reject(new Error(`cannot bind ${host}:${port} for a Prosody node (another cluster running? see externalPort): ${err.message}`)));
    srv.listen(port, host, () => srv.close(() => resolve()));
  });
}

/** One attempt: open a c2s stream and wait for <stream:features>. */
function probe(addr: HostPort, domain: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = "";
    const socket = net.connect(addr.port, addr.host);
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error("no stream features")), timeoutMs);
    socket.on("connect", () =>
      socket.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'>`),
    );
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Node implements ProsodyNode {
  websocket?: { internal: string; external: string };
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly logFile: string;
  readonly configFile: string;
  private readonly consoleFile: string;

  constructor(
    readonly id: string,
    readonly dir: string,
    readonly domain: string,
    readonly internal: HostPort,
    readonly external: HostPort,
    private readonly readyTimeout: number,
  ) {
    this.logFile = path.join(dir, "prosody.log");
    this.configFile = path.join(dir, "prosody.cfg.lua");
    this.consoleFile = path.join(dir, "console.log");
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.id} is already running`);
    await assertBindable(this.external.host, this.external.port);
    // Console output (Lua errors before logging is up) goes to a file: no pipe to drain.
    const out = openSync(this.consoleFile, "a");
    const child = spawn(PROSODY, ["--config", this.configFile], { cwd: this.dir, stdio: ["ignore", out, out] });
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
        // Both addresses: a failed bind is only logged by Prosody, it keeps running.
        await probe(this.internal, this.domain, 1000);
        await probe(this.external, this.domain, 1000);
        return;
      } catch (err) {
        last = err;
      }
      if (Date.now() > deadline) break;
      await sleep(50);
    }
    await this.kill("SIGKILL");
    throw new Error(
      `Prosody node ${this.id} (${this.internal.host}:${this.internal.port}, ${this.external.host}:${this.external.port}) ` +
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
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

export async function startProsodyCluster(opts: ProsodyClusterOptions = {}): Promise<ProsodyCluster> {
  const count = opts.count ?? 2;
  const domain = opts.domain ?? "lb.test";
  const dir = await mkdtemp(path.join(opts.dir ?? os.tmpdir(), "xmpp-lb-prosody-"));
  const keep = opts.keepDir ?? process.env.XMPP_LB_KEEP_PROSODY === "1";
  const nodes: Node[] = [];
  hookExit();
  if (!keep) liveDirs.add(dir);

  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    if (!keep) await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  try {
    for (let i = 1; i <= count; i++) {
      const id = `n${i}`;
      const nodeDir = path.join(dir, id);
      await mkdir(path.join(nodeDir, "data"), { recursive: true });
      await mkdir(path.join(nodeDir, "certs"));
      const prefix = opts.network ?? { internal: "127.0.1", external: "127.0.2" };
      const internal = { host: `${prefix.internal}.${i}`, port: await freePort(`${prefix.internal}.${i}`) };
      const externalPort = opts.externalPort ?? EXTERNAL_PORT;
      const external = { host: `${prefix.external}.${i}`, port: externalPort || (await freePort(`${prefix.external}.${i}`)) };
      const node = new Node(id, nodeDir, domain, internal, external, opts.readyTimeout ?? 15000);
      let extra = opts.extraConfig ?? "";
      const modules = [...BASE_MODULES, ...(opts.websocket ? ["websocket"] : []), ...(opts.modern ? MODERN_MODULES : [])];
      if (opts.websocket) {
        const httpPort = await freePort(internal.host);
        extra = websocketConfig({ internal, external }, httpPort) + extra;
        node.websocket = { internal: `ws://${internal.host}:${httpPort}/xmpp-websocket`, external: `ws://${external.host}:${httpPort}/xmpp-websocket` };
      }
      const config = configFor({
        id,
        dir: nodeDir,
        domain,
        internal,
        external,
        extra,
        modules,
        channelBinding: opts.channelBinding ?? false,
        tlsServerEndPointHash: opts.tlsServerEndPointHash,
        passwordHash: opts.passwordHash,
        certificate: opts.certificate ?? { cert: path.join(TLS_DIR, "server.pem"), key: path.join(TLS_DIR, "server.key") },
      });
      await writeFile(node.configFile, config);
      nodes.push(node);
    }
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await stop();
    throw err;
  }

  const cluster: ProsodyCluster = {
    domain,
    nodes,
    dir,
    // prosodyctl writes the account file directly; a running node reads it on the next login.
    async register(user, password) {
      await Promise.all(
        nodes.map(async (n) => {
          try {
            await execFileP(PROSODYCTL, ["--config", n.configFile, "register", user, domain, password], { cwd: n.dir, timeout: 30000 });
          } catch (err) {
            const e = err as { stdout?: string; stderr?: string; message: string };
            throw new Error(`prosodyctl register ${user}@${domain} on ${n.id} failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`);
          }
        }),
      );
    },
    stop,
  };
  try {
    for (const [user, password] of opts.users ?? []) await cluster.register(user, password);
  } catch (err) {
    await stop();
    throw err;
  }
  return cluster;
}

/** `--node` values for a cluster's nodes; `external` overrides where redirects would send clients. Nodes with WebSocket get `ws=` and `ws-internal=`. */
export function nodeFlags(nodes: readonly ProsodyNode[], external?: HostPort): string[] {
  return nodes.map((n) => {
    const ext = external ?? n.external;
    const ws = n.websocket === undefined ? "" : `,ws=${n.websocket.external},ws-internal=${n.websocket.internal}`;
    return `id=${n.id},internal=${n.internal.host}:${n.internal.port},external=${ext.host}:${ext.port}${ws}`;
  });
}
