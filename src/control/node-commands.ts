import type { Argv, CommandModule } from "yargs";
import { readBackendCa } from "../config.js";
import { ConfigError } from "../errors.js";
import { seconds } from "../flag-values.js";
import { SERVE_FLAGS, yargsOption } from "../flags.js";
import { createLogger, defaultLogFormat, type LogFormat, type LogLevel } from "../log.js";
import { nodeKeyOption, parseNode, type NodeKeyName } from "../node-keys.js";
import { RedisRegistry } from "../store/redis-registry.js";
import { probeNode } from "./node-probe.js";
import { NodeSidecar } from "./node-sidecar.js";
import { formatNodeTable, nodeListEntries } from "./node-table-print.js";

interface StoreArgs {
  store: string;
  storePrefix: string;
}

/** The `--node` keys a registered node's record keeps (`proxy=` and `maxconn=` are a balancer's own `--node` only). */
const REGISTERED_KEYS = ["id", "internal", "external", "weight", "zone", "domains", "ws", "ws-internal"] as const satisfies readonly NodeKeyName[];

/** yargs gives each node key by its name too (`ws-internal`), as parseNode takes it. */
interface RegisterArgs extends StoreArgs, Partial<Record<(typeof REGISTERED_KEYS)[number], string | number>> {
  ttl: number;
  probeDomain?: string;
  probeTimeout: number;
  backendTls: boolean;
  backendCa?: string;
  logLevel: string;
  logFormat?: string;
}

/** An operator command gives up (exit 1) when Redis has not answered within this. */
const OPERATOR_WAIT_MS = 3000;

/** @throws ConfigError for `memory` or a bad URL. */
function openRegistry({ store, storePrefix }: StoreArgs): RedisRegistry {
  if (store === "memory") throw new ConfigError("--store memory has no node registry: give the Redis URL the balancers use (redis://…)");
  return new RedisRegistry(store, { prefix: storePrefix });
}

/** Runs one operator action; a Redis that does not answer rejects with a StoreError (one line, exit 1). */
async function withRegistry<T>(args: StoreArgs, action: (registry: RedisRegistry) => Promise<T>): Promise<T> {
  const registry = openRegistry(args);
  try {
    await registry.waitUntilUp(OPERATOR_WAIT_MS);
    return await action(registry);
  } finally {
    await registry.close();
  }
}

/** Validates every flag before anything connects, then heartbeats until SIGTERM or SIGINT, which deregister and exit 0. */
function register(args: RegisterArgs): void {
  // The node flags are --node's keys: parseNode validates them the same way.
  const spec = parseNode(Object.fromEntries(REGISTERED_KEYS.flatMap((key) => (args[key] === undefined ? [] : [[key, args[key]]]))));
  const domain = args.probeDomain ?? spec.domains[0];
  if (domain === undefined) throw new ConfigError("--probe-domain (or --domains) is required: the domain the probe opens its XMPP stream to");
  const ttlMs = seconds("ttl", args.ttl, args.ttl, 0.001);
  const probeOptions = {
    domain,
    tls: args.backendTls ? ("always" as const) : ("when-required" as const),
    ca: args.backendCa === undefined ? undefined : readBackendCa(args.backendCa),
    timeoutMs: seconds("probe-timeout", args.probeTimeout, args.probeTimeout, 0.001),
    maxHeaderBytes: SERVE_FLAGS["max-header-bytes"].default,
  };
  const registry = openRegistry(args);

  const log = createLogger(args.logLevel as LogLevel, (args.logFormat as LogFormat | undefined) ?? defaultLogFormat()).child({ node: spec.id });
  const sidecar = new NodeSidecar(registry, { spec, ttlMs, probe: (signal) => probeNode(spec.internal, { ...probeOptions, signal }) }, log);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    void sidecar.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  sidecar.start();
}

async function list(args: StoreArgs & { json: boolean }): Promise<void> {
  const entries = await withRegistry(args, async (registry) => {
    const [registered, drained, loads] = await Promise.all([registry.listNodes(), registry.listDrained(), registry.loads()]);
    return nodeListEntries(registered, drained, loads);
  });
  process.stdout.write(args.json ? `${JSON.stringify(entries, null, 2)}\n` : formatNodeTable(entries));
}

/** drain, undrain and remove: one registry call, one line saying whether it changed anything. */
function changeCommand(
  name: string,
  describe: string,
  apply: (registry: RedisRegistry, id: string) => Promise<boolean>,
  outcome: (id: string, changed: boolean) => string,
): CommandModule<StoreArgs, StoreArgs & { id: string }> {
  return {
    command: `${name} <id>`,
    describe,
    builder: (c) => c.positional("id", { type: "string", demandOption: true, describe: "node id" }),
    handler: async (args) => {
      const changed = await withRegistry(args, (registry) => apply(registry, args.id));
      process.stdout.write(`${outcome(args.id, changed)}\n`);
    },
  };
}

const drainCommand = changeCommand(
  "drain",
  "no new users for the node on any balancer (registered or a static --node); its sessions continue",
  (registry, id) => registry.drain(id),
  (id, changed) => (changed ? `${id} drained: no new users on any balancer` : `${id} was already drained: nothing changed`),
);
const undrainCommand = changeCommand(
  "undrain",
  "the node takes new users again",
  (registry, id) => registry.undrain(id),
  (id, changed) => (changed ? `${id} undrained: it takes new users again` : `${id} was not drained: nothing changed`),
);
const removeCommand = changeCommand(
  "remove",
  "forget the node's registration and drain flag (a sidecar still running registers it again)",
  (registry, id) => registry.removeNode(id),
  (id, changed) => (changed ? `${id} removed: registration and drain flag forgotten` : `${id} was neither registered nor drained: nothing changed`),
);

/** `xmpp-lb node register|list|drain|undrain|remove`: the Redis node registry from the command line. */
export const nodeCommands: CommandModule = {
  command: "node",
  describe: "manage cluster nodes in the Redis store (register, list, drain, undrain, remove)",
  builder: (y) =>
    // yargs also sets the camelCase keys (storePrefix), which its types do not know.
    (
      y
        .option("store", { type: "string", demandOption: true, describe: "the balancers' Redis store: redis://[:password@]host:port[/db], rediss://..., redis-sentinel://..., redis-cluster://..." })
        .option("store-prefix", { ...yargsOption(SERVE_FLAGS["store-prefix"]), describe: "key prefix in Redis, as the balancers use it" }) as unknown as Argv<StoreArgs>
    )
      .command(
        "register",
        "heartbeat this node into the store while its XMPP server answers probes (run it beside the server)",
        (c) =>
          c
            .options(Object.fromEntries(REGISTERED_KEYS.map((key) => [key, nodeKeyOption(key)])))
            .option("ttl", { type: "number", default: 15, describe: "seconds the node stays after its last heartbeat; heartbeats every ttl/3" })
            .option("probe-domain", { type: "string", describe: "domain the probe's stream is opened to (default: the first of --domains)" })
            .option("probe-timeout", yargsOption(SERVE_FLAGS["health-timeout"]))
            .option("backend-tls", { ...yargsOption(SERVE_FLAGS["backend-tls"]), describe: "STARTTLS in the probe, as the balancers' --backend-tls" })
            .option("backend-ca", { ...yargsOption(SERVE_FLAGS["backend-ca"]), describe: "CA bundle to verify the node's certificate with" })
            .option("log-level", yargsOption(SERVE_FLAGS["log-level"]))
            .option("log-format", yargsOption(SERVE_FLAGS["log-format"])),
        (args) => register(args as unknown as RegisterArgs),
      )
      .command(
        "list",
        "the registered and drained nodes, with their cluster-wide sessions and last heartbeat",
        (c) => c.option("json", { type: "boolean", default: false, describe: "print JSON instead of a table" }),
        (args) => list(args as StoreArgs & { json: boolean }),
      )
      .command(drainCommand)
      .command(undrainCommand)
      .command(removeCommand)
      .demandCommand(1, "give a node subcommand: register, list, drain, undrain or remove"),
  handler: () => {},
};
