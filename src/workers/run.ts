import { randomBytes } from "node:crypto";
import cluster, { type Worker } from "node:cluster";
import type { BalancerConfig } from "../config.js";
import { createBalancer, type Balancer } from "../index.js";
import { admissionLimits } from "../listener/admission.js";
import { CountedAdmission } from "../control/counted-admission.js";
import type { Logger } from "../log.js";
import { AuthFailures, authFailureLimits } from "../session/auth-failures.js";
import { answerMetricsRequests, ClusterMetrics } from "./cluster-metrics.js";
import { IpcLimits } from "./ipc-limits.js";
import { IpcStore } from "./ipc-store.js";
import { serveLimits } from "./limits-server.js";
import { isMessage, type PrimaryMessage } from "./messages.js";
import { serveStore } from "./store-server.js";

/** How long the primary waits for workers past --shutdown-timeout before it kills them. */
const STOP_MARGIN_MS = 5000;

/**
 * Runs the balancer as the process's job: in this process (`--workers 1`), or
 * as the primary of `--workers N` processes, or as one of those workers.
 * Signals: SIGTERM/SIGINT stop gracefully and exit 0; SIGHUP reloads TLS (and re-reads --discover sources).
 */
export async function runBalancer(config: BalancerConfig, log: Logger): Promise<void> {
  if (config.workers <= 1) return runSingle(config, log);
  if (cluster.isPrimary) return runPrimary(config, log);
  return runWorker(config, log);
}

/** `sigint: false`: a worker, which a terminal's SIGINT reaches with its whole group; the primary coordinates, the worker waits for it. */
function onSignals(log: Logger, stop: (signal: string) => void, reload: () => void, rediscover: () => void = () => {}, sigint = true): void {
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => (sigint ? stop("SIGINT") : undefined));
  process.on("SIGHUP", () => {
    rediscover();
    try {
      reload();
      log.info("TLS certificate reloaded");
    } catch (err) {
      log.warn({ err: (err as Error).message }, "TLS reload failed; the previous certificate stays in use");
    }
  });
}

/** Stops once, then exits 0 (1 if stopping failed). */
function stopper(log: Logger, close: (drainMs: number) => Promise<void>, drainMs: number): (signal: string) => void {
  let stopping = false;
  return (signal) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    close(drainMs).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  };
}

async function runSingle(config: BalancerConfig, log: Logger): Promise<void> {
  // The signals are taken before the listeners open: a SIGTERM right after "listening" stops gracefully too.
  const starting = createBalancer(config, { logger: log });
  let balancer: Balancer | undefined;
  onSignals(log, stopper(log, async (drainMs) => (await starting).close(drainMs), config.shutdownTimeoutMs), () => balancer?.reloadTls(), () => balancer?.rediscover());
  balancer = await starting;
}

/** How the primary hands workers the shared ticket keys (not XMPP_LB_*, which the CLI reads as flags). */
const TICKET_KEYS_ENV = "XMPPLB_WORKER_TLS_TICKET_KEYS";

/**
 * The primary of `--workers N`: it holds the embedded store (every worker's
 * decisions meet in it, so affinity holds across workers) and the connection
 * and failed-login counts (the limits hold over all workers), serves the admin
 * endpoint with every worker's metrics summed, and restarts a worker that dies.
 * The workers share the listening sockets (Node's cluster, round robin).
 */
async function runPrimary(config: BalancerConfig, log: Logger): Promise<void> {
  const clusterMetrics = new ClusterMetrics();
  const admission = new CountedAdmission(admissionLimits(config));
  const authFailures = new AuthFailures(authFailureLimits(config));
  const served = new Map<Worker, () => void>();
  let restarts = 0;
  const control = await createBalancer(
    { ...config, listeners: [] },
    {
      logger: log.child({ role: "primary" }),
      aggregateMetrics: (own) => clusterMetrics.registry(own),
      limits: { admission, authFailures },
      dataPath: { listeners: config.listeners, workers: () => ({ configured: config.workers, running: [...served.keys()].filter((w) => !w.isDead()).length, restarts }) },
    },
  );
  // The workers' pre-auth connections are counted here, where the limit holds over all of them.
  control.metrics.countPreauth(() => admission.preAuthConnections, config.maxPreauthConnections);
  let stopping = false;
  // One set of TLS session ticket keys for every worker (a restarted worker too): tickets resume anywhere.
  const ticketKeys = randomBytes(48).toString("hex");
  const fork = (): void => {
    const worker = cluster.fork({ [TICKET_KEYS_ENV]: ticketKeys });
    const stops = [serveStore(control.store, worker), serveLimits(admission, authFailures, worker)];
    served.set(worker, () => stops.forEach((stop) => stop()));
  };
  cluster.on("exit", (worker, code, signal) => {
    served.get(worker)?.();
    served.delete(worker);
    if (stopping) return;
    log.warn({ pid: worker.process.pid, code, signal }, "a worker died: starting another");
    restarts += 1;
    control.metrics.workerRestarts.inc();
    fork();
  });
  for (let i = 0; i < config.workers; i++) fork();
  log.info({ workers: config.workers }, "workers started");

  const stopAll = async (drainMs: number): Promise<void> => {
    stopping = true;
    // The workers stop accepting now; the primary's /healthz says so while they drain.
    control.announceShutdown();
    const exited = [...served.keys()].map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once("exit", () => resolve()))));
    for (const worker of served.keys()) if (worker.isConnected()) worker.send({ type: "xmpp-lb:stop", drainMs } satisfies PrimaryMessage);
    const late = setTimeout(() => {
      for (const worker of served.keys()) worker.process.kill("SIGKILL");
    }, drainMs + STOP_MARGIN_MS);
    await Promise.all(exited);
    clearTimeout(late);
    await control.close();
    clusterMetrics.close();
  };
  onSignals(
    log,
    stopper(log, stopAll, config.shutdownTimeoutMs),
    () => {
      for (const worker of served.keys()) worker.process.kill("SIGHUP");
    },
    () => control.rediscover(),
  );
}

/** A worker of `--workers N`: the data path, asking the primary's store (or Redis directly) and the primary's counts for the limits. */
async function runWorker(config: BalancerConfig, log: Logger): Promise<void> {
  const store = config.store === "memory" ? new IpcStore("memory") : undefined;
  const limits = new IpcLimits(admissionLimits(config), authFailureLimits(config));
  let balancer: Balancer | undefined;
  // From the start: the primary asks only workers that said they listen.
  answerMetricsRequests(() => balancer?.metrics.registry);
  const ticketKeys = process.env[TICKET_KEYS_ENV];
  if (config.tls !== undefined && ticketKeys !== undefined) config = { ...config, tls: { ...config.tls, ticketKeys: Buffer.from(ticketKeys, "hex") } };
  // The admin endpoint is the primary's.
  balancer = await createBalancer({ ...config, metrics: undefined }, { logger: log, store, limits: { admission: limits, authFailures: limits } });
  const running = balancer;
  const stop = stopper(log, (drainMs) => running.close(drainMs), config.shutdownTimeoutMs);
  process.on("message", (message: unknown) => {
    if (isMessage<Extract<PrimaryMessage, { type: "xmpp-lb:stop" }>>(message, "xmpp-lb:stop")) stop("primary");
  });
  onSignals(log, stop, () => running.reloadTls(), () => running.rediscover(), false);
}
