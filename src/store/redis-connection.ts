import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { StoreError } from "../errors.js";
import { defineScripts, type ScriptedClient } from "./redis-scripts.js";
import type { RedisTarget } from "./redis-url.js";

export interface RedisConnectionOptions {
  /** No call waits longer than this for Redis (ms). */
  timeoutMs: number;
  /** Called after every Redis call: operation name, seconds taken, success. */
  observe?: ((op: string, seconds: number, ok: boolean) => void) | undefined;
}

export type StatusListener = (up: boolean, reason?: string) => void;

/** Reconnect forever, backing off to one attempt a second. */
const retryDelay = (attempt: number): number => Math.min(100 * attempt, 1000);
/**
 * An open connection on which nothing has answered for this long may be
 * half-open (the host vanished without a reset): drop it and dial again,
 * which with Sentinel also asks for the current master.
 */
const SILENT_CONNECTION_MS = 3000;
const CONNECT_TIMEOUT_MS = 2000;

/**
 * One Redis (standalone, Sentinel or Cluster) as the store uses it: calls
 * that fail fast with a StoreError when Redis is away, an up/down status that
 * changes once per transition, and a separate connection for pub/sub.
 * ioredis reconnects by itself; nothing here throws outside a call.
 */
export class RedisConnection {
  private readonly client: ScriptedClient;
  private subscriber: Redis | Cluster | null = null;
  private readonly listeners = new Set<StatusListener>();
  private isUp = false;
  private lastError: string | undefined;
  private lastAnswer = performance.now();
  private closed = false;
  /** Settles at the first connection outcome, so a call made right after construction waits for it (within its deadline). */
  private readonly firstOutcome: Promise<void>;

  constructor(
    private readonly target: RedisTarget,
    private readonly options: RedisConnectionOptions,
  ) {
    this.client = defineScripts(this.createClient(false));
    this.client.on("error", (err: Error) => {
      this.lastError = err.message;
    });
    this.client.on("ready", () => this.answered());
    this.client.on("close", () => this.setUp(false, this.lastError ?? "connection closed"));
    this.firstOutcome = new Promise((resolve) => {
      this.client.once("ready", resolve);
      this.client.once("close", resolve);
    });
  }

  get up(): boolean {
    return this.isUp;
  }

  /**
   * Resolves once Redis has answered (at once if it is up), or rejects with a
   * StoreError after `timeoutMs`: for start-up, where connecting (TLS, asking
   * Sentinel, reading the Cluster's slots) may take longer than one call may.
   */
  async waitUntilUp(timeoutMs: number): Promise<void> {
    if (this.isUp) return;
    await new Promise<void>((resolve, reject) => {
      const stopListening = this.onStatus((up) => {
        if (!up) return;
        clearTimeout(timer);
        stopListening();
        resolve();
      });
      const timer = setTimeout(() => {
        stopListening();
        reject(new StoreError(`Redis did not answer within ${timeoutMs} ms${this.lastError === undefined ? "" : `: ${this.lastError}`}`));
      }, timeoutMs);
    });
  }

  /** Calls `listener` on every transition: Redis lost (with the reason) or back. Returns an unsubscribe function. */
  onStatus(listener: StatusListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Runs one Redis call within the deadline. Any failure (unreachable, no
   * answer in time, an error reply) rejects with a StoreError and marks
   * Redis down; any answer marks it up.
   */
  async run<T>(op: string, call: (client: ScriptedClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(`Redis ${op}: the store is closed`);
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
    });
    let result: T;
    try {
      result = await Promise.race([this.firstOutcome.then(() => call(this.client)), deadline]);
    } catch (err) {
      const message = (err as Error).message;
      this.options.observe?.(op, (performance.now() - started) / 1000, false);
      this.setUp(false, message);
      this.reconnectIfSilent();
      throw new StoreError(`Redis ${op} failed: ${message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    this.options.observe?.(op, (performance.now() - started) / 1000, true);
    this.answered();
    return result;
  }

  /**
   * Subscribes to `channel` on a connection of its own. `onMessage` gets each
   * message; `onConnected` runs at every (re)connection of that connection,
   * when messages may have been missed.
   */
  listen(channel: string, onMessage: (message: string) => void, onConnected: () => void): void {
    if (this.closed || this.subscriber !== null) throw new Error("RedisConnection.listen: closed, or already listening");
    const subscriber = this.createClient(true);
    subscriber.on("error", () => {}); // the command connection reports the status
    subscriber.on("ready", onConnected);
    subscriber.on("message", (from: string, message: string) => {
      if (from === channel) onMessage(message);
    });
    // The first SUBSCRIBE waits in the offline queue until connected; ioredis resubscribes after a reconnect.
    // "ready" may come before the SUBSCRIBE is in place: what changed in between is read once it is.
    subscriber.subscribe(channel).then(onConnected, () => {});
    this.subscriber = subscriber;
  }

  /** Disconnects both connections and stops reconnecting. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.isUp = false;
    this.listeners.clear();
    await Promise.all([this.client, this.subscriber].map((client) => (client === null ? undefined : disconnect(client, this.options.timeoutMs))));
  }

  private answered(): void {
    this.lastAnswer = performance.now();
    this.lastError = undefined;
    this.setUp(true);
  }

  private setUp(up: boolean, reason?: string): void {
    if (this.closed || up === this.isUp) return;
    this.isUp = up;
    for (const listener of [...this.listeners]) listener(up, reason);
  }

  private reconnectIfSilent(): void {
    if (this.closed || this.client.status !== "ready" || performance.now() - this.lastAnswer < SILENT_CONNECTION_MS) return;
    this.lastAnswer = performance.now(); // one reconnect per silent period
    this.client.disconnect(true);
  }

  /**
   * Fail fast: no offline queue (a call while disconnected fails at once), no
   * resending after a reconnect (a late claim could overwrite a newer one),
   * and a per-command timeout. The subscriber connection may queue its
   * SUBSCRIBE and has no command timeout.
   */
  private createClient(subscriber: boolean): Redis | Cluster {
    const { target } = this;
    const perCommand: RedisOptions = {
      username: target.username,
      password: target.password,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: subscriber ? undefined : this.options.timeoutMs,
      maxRetriesPerRequest: subscriber ? null : 0,
      autoResendUnfulfilledCommands: false,
      keepAlive: 10_000,
    };
    if (target.kind === "cluster") {
      const options: ClusterOptions = {
        redisOptions: perCommand,
        enableOfflineQueue: subscriber,
        clusterRetryStrategy: retryDelay,
      };
      return new Cluster(target.nodes, options);
    }
    const options: RedisOptions = {
      ...perCommand,
      db: target.db,
      enableOfflineQueue: subscriber,
      retryStrategy: retryDelay,
      // After a Sentinel failover the old master turns replica: reconnect to find the new one.
      reconnectOnError: (err) => err.message.startsWith("READONLY"),
    };
    if (target.kind === "sentinel") {
      return new Redis({
        ...options,
        sentinels: target.sentinels,
        name: target.masterName,
        sentinelRetryStrategy: retryDelay,
        failoverDetector: true,
      });
    }
    return new Redis({ ...options, ...target.server, ...(target.tls ? { tls: {} } : {}) });
  }
}

/** Disconnects; if the socket has not closed within `graceMs` (a stopped server never answers the FIN), destroys it. */
async function disconnect(client: Redis | Cluster, graceMs: number): Promise<void> {
  if (client.status === "end") return;
  const connections = client instanceof Cluster ? client.nodes() : [client];
  const ended = new Promise<void>((resolve) => client.once("end", () => resolve()));
  client.disconnect();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), graceMs);
  });
  if (await Promise.race([ended.then(() => false), late])) {
    for (const redis of connections) redis.stream?.destroy();
  }
  clearTimeout(timer);
}
