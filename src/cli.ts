#!/usr/bin/env node
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { DEFAULTS, resolveConfig, type ConfigInput } from "./config.js";
import { ConfigError } from "./errors.js";
import { LOG_FORMATS, LOG_LEVELS, createLogger } from "./log.js";
import { nodeCommands } from "./control/node-commands.js";
import { STRATEGIES } from "./router/strategies.js";
import { runBalancer } from "./workers/run.js";

/** A wrong flag is one clear line and exit code 2, never a stack trace. */
function usageError(message: string): never {
  process.stderr.write(`xmpp-lb: ${message.replace(/\s*\n\s*/g, " ")}\nRun 'xmpp-lb --help' for the flags.\n`);
  process.exit(2);
}

async function serve(argv: ConfigInput): Promise<void> {
  const config = resolveConfig(argv);
  await runBalancer(config, createLogger(config.logLevel, config.logFormat));
}

export async function main(args: string[]): Promise<void> {
  await yargs(args)
    .scriptName("xmpp-lb")
    .env("XMPP_LB")
    .config("config", "JSON file with any of the flags (keys as the flag names)")
    .command(
      ["serve", "$0"],
      "run the balancer (the default command)",
      (y) =>
        y
          .option("listen", { type: "string", array: true, describe: "HOST:PORT (STARTTLS), direct-tls://HOST:PORT (XEP-0368), or ws://HOST:PORT/PATH and wss://HOST:PORT/PATH (RFC 7395), with optional ,mode=redirect|forward ,phase=open|login ,proxy; repeatable", default: [DEFAULTS.listen] })
          .option("mode", { type: "string", choices: ["redirect", "forward"], default: DEFAULTS.mode, describe: "redirect with see-other-host, or forward and relay" })
          .option("phase", { type: "string", choices: ["open", "login"], default: DEFAULTS.phase, describe: "decide at the stream header (when it carries from=) or at the SASL <auth/>" })
          .option("domain", { type: "string", array: true, describe: "XMPP domain served; repeatable (a stream to any other gets <host-unknown/>)" })
          .option("tls-cert", { type: "string", array: true, describe: "PEM certificate (chain) for client TLS; repeatable, e.g. an ECDSA and an RSA chain, each with its --tls-key in the same order" })
          .option("tls-key", { type: "string", array: true, describe: "PEM private key for client TLS; repeatable, one per --tls-cert" })
          .option("tls-ciphers", { type: "string", describe: "OpenSSL cipher string for client TLS (default: ECDHE with AES-GCM or ChaCha20-Poly1305 only; TLS 1.3 suites are kept unless the string names some)" })
          .option("tls-min-version", { type: "string", choices: ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"], default: DEFAULTS.tlsMinVersion, describe: "lowest TLS version for clients" })
          .option("allow-plaintext", { type: "boolean", default: false, describe: "allow logins without TLS (test beds only)" })
          .option("node", { type: "string", array: true, describe: "id=ID,internal=HOST:PORT,external=HOST:PORT[,weight=N][,zone=Z][,domains=D1+D2][,proxy=v1|v2][,ws=wss://URL][,ws-internal=ws://URL]; repeatable" })
          .option("discover", { type: "string", array: true, describe: "nodes from DNS or a file, followed at run time: dns://NAME:PORT (every A/AAAA record), dns+srv://_xmpp-client._tcp.NAME (SRV: target, port, priority, weight), with ?external=%h.example.com:5222; or file:///PATH (a JSON array of --node values); repeatable" })
          .option("dns-server", { type: "string", array: true, describe: "IP[:PORT] of the resolver for --discover (Consul: 127.0.0.1:8600); default: the system's; repeatable" })
          .option("discover-min-interval", { type: "number", default: DEFAULTS.discoverMinIntervalSeconds, describe: "seconds: DNS is re-resolved at the record TTL but never sooner (SRV: at this pace); nodes files are checked this often" })
          .option("discover-max-interval", { type: "number", default: DEFAULTS.discoverMaxIntervalSeconds, describe: "seconds: DNS is re-resolved at least this often, whatever the TTL; the longest retry pause while DNS fails" })
          .option("ws-origin", { type: "string", array: true, describe: "an Origin WebSocket clients may come from (e.g. https://chat.example.com); repeatable; none: any origin" })
          .option("ws-ping-interval", { type: "number", default: DEFAULTS.wsPingIntervalSeconds, describe: "seconds between WebSocket pings; a client that did not answer the last one is cut off (0: no pings)" })
          .option("store", { type: "string", default: "memory", describe: "cluster membership store: memory (embedded, one instance) or redis://[:password@]host:port[/db], rediss://..., redis-sentinel://host:port,host:port/master[/db], redis-cluster://host:port,host:port" })
          .option("store-prefix", { type: "string", default: DEFAULTS.storePrefix, describe: "key prefix in Redis (several clusters can share one Redis)" })
          .option("store-timeout", { type: "number", default: DEFAULTS.storeTimeoutSeconds, describe: "seconds a login may wait for the store; beyond it routing hashes over the last known nodes" })
          .option("strategy", { type: "string", choices: STRATEGIES as string[], default: DEFAULTS.strategy, describe: "how a new user's node is chosen" })
          .option("sasl-mechanisms", { type: "string", array: true, default: DEFAULTS.saslMechanisms, describe: "SASL mechanisms offered, in order (never -PLUS)" })
          .option("backend-tls", { type: "boolean", default: false, describe: "STARTTLS from the balancer to nodes" })
          .option("proxy-protocol", { type: "boolean", default: false, describe: "every listener reads a PROXY protocol header (v1 or v2, as an NLB/ELB or HAProxy sends it) first; per listener: ,proxy" })
          .option("backend-proxy-protocol", { type: "string", choices: ["v1", "v2"], describe: "send nodes a PROXY protocol header with the client's address (per node: proxy=v1|v2)" })
          .option("backend-ca", { type: "string", describe: "CA bundle to verify node certificates with (--backend-tls)" })
          .option("zone", { type: "string", describe: "this balancer's zone: nodes with the same zone= are preferred" })
          .option("affinity-ttl", { type: "number", default: DEFAULTS.affinityTtlSeconds, describe: "seconds a JID stays on its node after its last connection (resumption window)" })
          .option("redirect-loop-window", { type: "number", default: DEFAULTS.redirectLoopWindowSeconds, describe: "seconds after a redirect in which the same client and JID coming back is forwarded instead (0: off)" })
          .option("login-timeout", { type: "number", default: DEFAULTS.loginTimeoutSeconds, describe: "seconds a client has to reach the decision" })
          .option("dial-timeout", { type: "number", default: DEFAULTS.dialTimeoutSeconds, describe: "seconds to connect to a node and open its stream" })
          .option("tcp-keepalive", { type: "number", default: DEFAULTS.tcpKeepaliveSeconds, describe: "seconds of silence before TCP keepalive probes, both sides (0: off); no idle timeout otherwise" })
          .option("max-preauth-bytes", { type: "number", default: DEFAULTS.maxPreauthBytes, describe: "bytes a client may send before the decision" })
          .option("max-header-bytes", { type: "number", default: DEFAULTS.maxHeaderBytes, describe: "largest stream header accepted" })
          .option("health-interval", { type: "number", default: DEFAULTS.healthIntervalSeconds, describe: "seconds between XMPP probes of each node" })
          .option("health-timeout", { type: "number", default: DEFAULTS.healthTimeoutSeconds, describe: "seconds a probe may take" })
          .option("workers", { type: "string", default: "1", describe: "processes running the data path: a number, or auto (one per core); they share the listeners, one store and one /metrics" })
          .option("max-connections", { type: "number", default: DEFAULTS.maxConnections, describe: "client connections open at once, in all (0: no limit); beyond it new ones are refused" })
          .option("max-connections-per-address", { type: "number", default: DEFAULTS.maxConnectionsPerAddress, describe: "client connections open at once per client address (0: no limit)" })
          .option("max-connection-rate-per-address", { type: "number", default: DEFAULTS.maxConnectionRatePerAddress, describe: "new connections per client address per second (0: no limit)" })
          .option("max-preauth-connections", { type: "number", default: DEFAULTS.maxPreauthConnections, describe: "connections still logging in, in all (0: no limit): a slowloris wave cannot take the slots of sessions" })
          .option("max-auth-failures-per-address", { type: "number", default: DEFAULTS.maxAuthFailuresPerAddress, describe: "failed logins per client address within --auth-failure-window before its logins are refused (0: no limit)" })
          .option("max-auth-failures-per-jid", { type: "number", default: DEFAULTS.maxAuthFailuresPerJid, describe: "failed logins per account within --auth-failure-window before its logins are refused (0: no limit)" })
          .option("auth-failure-window", { type: "number", default: DEFAULTS.authFailureWindowSeconds, describe: "seconds failed logins are remembered" })
          .option("traffic-limit", { type: "string", describe: "what a forwarded client may send: [bin:]BYTES_PER_MINUTE[:BYTES_PER_CONNECTION[:disc|throttle]] (k, m, g suffixes; 0: no limit), e.g. 1m:0:throttle; off by default" })
          .option("tls-handshake-timeout", { type: "number", default: DEFAULTS.tlsHandshakeTimeoutSeconds, describe: "seconds a TLS handshake (STARTTLS or direct) may take" })
          .option("shutdown-timeout", { type: "number", default: DEFAULTS.shutdownTimeoutSeconds, describe: "seconds forwarded sessions may run on after SIGTERM before they are closed" })
          .option("health-fall", { type: "number", default: DEFAULTS.healthFall, describe: "failed probes in a row that take an up node out" })
          .option("health-rise", { type: "number", default: DEFAULTS.healthRise, describe: "good probes in a row that bring a down node back" })
          .option("metrics", { type: "string", describe: "HOST:PORT for /metrics, /healthz and /nodes (e.g. 127.0.0.1:9102)" })
          .option("admin-host", { type: "string", array: true, describe: "a name the admin endpoint answers to besides its own address (e.g. lb1.internal, at any port); repeatable" })
          .option("admin-token", { type: "string", describe: "bearer token the admin endpoint's POSTs (drain, undrain) must carry" })
          .option("admin-token-file", { type: "string", describe: "file holding the --admin-token, read at start" })
          .option("log-level", { type: "string", choices: LOG_LEVELS as unknown as string[], default: DEFAULTS.logLevel })
          .option("log-format", { type: "string", choices: LOG_FORMATS as unknown as string[], describe: "json (one object per line) or pretty (one readable line per event); default: pretty on a terminal, else json" }),
      async (argv) => serve(argv as ConfigInput),
    )
    .command(nodeCommands)
    .strict()
    .help()
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((message, err) => {
      if (err instanceof ConfigError) usageError(err.message);
      if (err) throw err;
      usageError(message ?? "bad arguments");
    })
    .parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  if (err instanceof ConfigError) usageError(err.message);
  process.stderr.write(`xmpp-lb: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
