import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import type { MetricsJson } from "../metrics.js";
import { isMessage, type PrimaryMessage, type WorkerMessage } from "./messages.js";

/** A worker that has not sent its metrics within this fails the request (a scrape that misses a worker would look like a counter reset). */
const ANSWER_TIMEOUT_MS = 5000;

type MetricsAnswer = Extract<WorkerMessage, { type: "xmpp-lb:metrics-answer" }>;

/**
 * The primary's view of `--workers` metrics: every live worker's registry and
 * the primary's own (its health probes, membership, worker restarts), summed
 * by prom-client's aggregators (or each metric's own: `max` for node states,
 * `min` for the store's). One registry serves both /metrics and the status
 * page's rates.
 */
export class ClusterMetrics {
  private nextId = 0;
  private readonly pending = new Map<number, (metrics: MetricsJson) => void>();
  /** Workers that listen for requests: one asked before would never answer. */
  private readonly ready = new Set<Worker>();

  constructor() {
    cluster.on("message", this.onMessage);
    cluster.on("exit", this.onExit);
  }

  async registry(own: Registry): Promise<Registry> {
    const workers = [...this.ready].filter((w) => w.isConnected());
    const parts = await Promise.all([own.getMetricsAsJSON(), ...workers.map((w) => this.ask(w))]);
    return AggregatorRegistry.aggregate(parts);
  }

  close(): void {
    cluster.off("message", this.onMessage);
    cluster.off("exit", this.onExit);
  }

  private ask(worker: Worker): Promise<MetricsJson> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not send its metrics within ${ANSWER_TIMEOUT_MS / 1000} s`));
      }, ANSWER_TIMEOUT_MS);
      this.pending.set(id, (metrics) => {
        clearTimeout(timer);
        resolve(metrics);
      });
      worker.send({ type: "xmpp-lb:metrics-request", id } satisfies PrimaryMessage);
    });
  }

  private readonly onMessage = (worker: Worker, message: unknown): void => {
    if (isMessage<Extract<WorkerMessage, { type: "xmpp-lb:metrics-ready" }>>(message, "xmpp-lb:metrics-ready")) this.ready.add(worker);
    if (!isMessage<MetricsAnswer>(message, "xmpp-lb:metrics-answer")) return;
    const answer = this.pending.get(message.id);
    this.pending.delete(message.id);
    answer?.(message.metrics);
  };

  private readonly onExit = (worker: Worker): void => void this.ready.delete(worker);
}

/**
 * A worker's side, from its start: answers the primary's requests with this
 * process's metrics, none until `registry` has one (a worker still starting
 * has counted nothing yet).
 */
export function answerMetricsRequests(registry: () => Registry | undefined, channel: NodeJS.Process = process): void {
  channel.on("message", (message: unknown) => {
    if (!isMessage<Extract<PrimaryMessage, { type: "xmpp-lb:metrics-request" }>>(message, "xmpp-lb:metrics-request")) return;
    const answer = (metrics: MetricsJson): void => void channel.send!({ type: "xmpp-lb:metrics-answer", id: message.id, metrics } satisfies WorkerMessage);
    const own = registry();
    if (own === undefined) answer([]);
    else void own.getMetricsAsJSON().then(answer);
  });
  channel.send!({ type: "xmpp-lb:metrics-ready" } satisfies WorkerMessage);
}
