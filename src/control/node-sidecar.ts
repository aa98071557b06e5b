import { setTimeout as sleep } from "node:timers/promises";
import type { NodeSpec } from "../cluster/node.js";
import type { Logger } from "../log.js";
import type { RedisRegistry } from "../store/redis-registry.js";

export interface NodeSidecarOptions {
  spec: NodeSpec;
  /** The node leaves the store this long after its last heartbeat; one beat every third of it. */
  ttlMs: number;
  /** Resolves when the XMPP server answers at the XMPP level; `signal` aborts it when the sidecar stops. */
  probe: (signal: AbortSignal) => Promise<unknown>;
}

/** Connecting may take longer than one call may (TLS, Sentinel, Cluster slots): wait this long before the first beat. */
const STARTUP_WAIT_MS = 5000;

/**
 * The heartbeat loop of `xmpp-lb node register`: every TTL/3 it probes the
 * XMPP server and, only if the probe succeeded, registers the node again, so
 * a node that stops answering leaves the store one TTL later and comes back
 * with its first good probe. Logs once per transition (probe failing or ok,
 * Redis lost or back). stop() deregisters the node.
 */
export class NodeSidecar {
  private readonly stopping = new AbortController();
  private readonly stopped: Promise<void>;
  private running: Promise<void> = Promise.resolve();
  private probeOk: boolean | undefined;

  constructor(
    private readonly registry: RedisRegistry,
    private readonly options: NodeSidecarOptions,
    private readonly log: Logger,
  ) {
    this.stopped = new Promise((resolve) => this.stopping.signal.addEventListener("abort", () => resolve(), { once: true }));
  }

  start(): void {
    this.running = this.run();
  }

  /** Ends the loop (an in-flight probe is abandoned), then deregisters the node: best effort, bounded by the registry's call timeout. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
    const { id } = this.options.spec;
    try {
      if (await this.registry.deregisterNode(id)) this.log.info("deregistered: the balancers stop sending new users at once");
      else this.log.info("not registered (the probe was failing): nothing to deregister");
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not deregister: the node leaves the store when its TTL runs out");
    }
    await this.registry.close();
  }

  private async run(): Promise<void> {
    this.registry.onStatus((up, reason) => {
      if (up) this.log.info("Redis reachable");
      else this.log.warn({ reason }, "Redis lost: no heartbeats until it is back");
    });
    const connected = await Promise.race([this.registry.waitUntilUp(STARTUP_WAIT_MS).then(() => true, () => false), this.stopped.then(() => true)]);
    if (!connected) this.log.warn({ waitedMs: STARTUP_WAIT_MS }, "Redis not reachable yet: still trying");

    const intervalMs = this.options.ttlMs / 3;
    const { signal } = this.stopping;
    while (!signal.aborted) {
      const started = performance.now();
      await this.beat();
      await sleep(Math.max(0, intervalMs - (performance.now() - started)), undefined, { signal }).catch(() => {});
    }
  }

  private async beat(): Promise<void> {
    const { signal } = this.stopping;
    try {
      await this.options.probe(signal);
    } catch (err) {
      if (!signal.aborted) this.probed(false, (err as Error).message);
      return;
    }
    this.probed(true);
    if (signal.aborted) return;
    try {
      if (await this.registry.registerNode(this.options.spec, this.options.ttlMs)) this.log.info("registered: announced to the balancers");
    } catch {
      // The Redis status listener logs the loss once; the next beat tries again.
    }
  }

  private probed(ok: boolean, reason?: string): void {
    if (ok === this.probeOk) return;
    const first = this.probeOk === undefined;
    this.probeOk = ok;
    if (!ok) this.log.warn({ reason }, "probe failing: no heartbeats, the node leaves the store when its TTL runs out");
    else if (first) this.log.info({ intervalMs: Math.round(this.options.ttlMs / 3) }, "probe ok: heartbeating");
    else this.log.info("probe ok again: heartbeats resume");
  }
}
