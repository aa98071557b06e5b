import { StoreError } from "../errors.js";
import type { Claim, ClusterStore, NodeLoad, StoredNode } from "../store/store.js";
import { isMessage, type PrimaryMessage, type StoreOp } from "./messages.js";

type Answer = Extract<PrimaryMessage, { type: "xmpp-lb:store-answer" }>;

/**
 * A worker's view of the primary's store: every call is a message to the
 * primary and its answer, so all workers share one session directory and one
 * set of loads. Membership and status announcements come the other way.
 */
export class IpcStore implements ClusterStore {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  private readonly watchers = new Set<(nodes: StoredNode[]) => void>();
  private readonly statusListeners = new Set<(up: boolean, reason?: string) => void>();
  private isUp = true;

  constructor(
    readonly kind: "memory" | "redis",
    private readonly channel: NodeJS.Process = process,
  ) {
    channel.on("message", this.onMessage);
  }

  get up(): boolean {
    return this.isUp;
  }

  private readonly onMessage = (message: unknown): void => {
    if (isMessage<Answer>(message, "xmpp-lb:store-answer")) {
      const waiting = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.ok) waiting?.resolve(message.value);
      else waiting?.reject(new StoreError(message.error));
    } else if (isMessage<Extract<PrimaryMessage, { type: "xmpp-lb:nodes" }>>(message, "xmpp-lb:nodes")) {
      for (const watcher of this.watchers) watcher(message.nodes);
    } else if (isMessage<Extract<PrimaryMessage, { type: "xmpp-lb:status" }>>(message, "xmpp-lb:status")) {
      this.isUp = message.up;
      for (const listener of this.statusListeners) listener(message.up, message.reason);
    }
  };

  private call<T>(op: StoreOp, ...args: unknown[]): Promise<T> {
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.channel.send!({ type: "xmpp-lb:store-call", id, op, args });
    });
  }

  waitUntilUp(timeoutMs: number): Promise<void> {
    return this.call("waitUntilUp", timeoutMs);
  }
  onStatus(listener: (up: boolean, reason?: string) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }
  listNodes(): Promise<StoredNode[]> {
    return this.call("listNodes");
  }
  watchNodes(onChange: (nodes: StoredNode[]) => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }
  lookup(jid: string): Promise<string | null> {
    return this.call("lookup", jid);
  }
  claim(jid: string, nodeId: string, replace: readonly string[]): Promise<Claim> {
    return this.call("claim", jid, nodeId, replace);
  }
  release(jid: string, nodeId: string): Promise<void> {
    return this.call("release", jid, nodeId);
  }
  connectionOpened(jid: string | null, nodeId: string): Promise<void> {
    return this.call("connectionOpened", jid, nodeId);
  }
  connectionClosed(jid: string | null, nodeId: string, clean = false): Promise<void> {
    return this.call("connectionClosed", jid, nodeId, clean);
  }
  redirected(jid: string | null, nodeId: string): Promise<void> {
    return this.call("redirected", jid, nodeId);
  }
  async loads(): Promise<ReadonlyMap<string, NodeLoad>> {
    return new Map(await this.call<Array<[string, NodeLoad]>>("loads"));
  }
  drain(nodeId: string): Promise<void> {
    return this.call("drain", nodeId);
  }
  undrain(nodeId: string): Promise<void> {
    return this.call("undrain", nodeId);
  }
  async close(): Promise<void> {
    this.channel.off("message", this.onMessage);
    for (const waiting of this.pending.values()) waiting.reject(new StoreError("the worker is stopping"));
    this.pending.clear();
  }
}
