import type { Claim, ClusterStore, NodeLoad, StoredNode } from "../store/store.js";
import { IpcCaller } from "./ipc-calls.js";
import { isMessage, type PrimaryMessage, type StoreOp } from "./messages.js";

/**
 * A worker's view of the primary's store: every call is a message to the
 * primary and its answer, so all workers share one session directory and one
 * set of loads. Membership and status announcements come the other way.
 */
export class IpcStore implements ClusterStore {
  private readonly calls: IpcCaller<StoreOp>;
  private readonly watchers = new Set<(nodes: StoredNode[]) => void>();
  private readonly statusListeners = new Set<(up: boolean, reason?: string) => void>();
  private isUp = true;

  constructor(
    readonly kind: "memory" | "redis",
    private readonly channel: NodeJS.Process = process,
  ) {
    this.calls = new IpcCaller("store", channel);
    channel.on("message", this.onMessage);
  }

  get up(): boolean {
    return this.isUp;
  }

  private readonly onMessage = (message: unknown): void => {
    if (isMessage<Extract<PrimaryMessage, { type: "xmpp-lb:nodes" }>>(message, "xmpp-lb:nodes")) {
      for (const watcher of this.watchers) watcher(message.nodes);
    } else if (isMessage<Extract<PrimaryMessage, { type: "xmpp-lb:status" }>>(message, "xmpp-lb:status")) {
      this.isUp = message.up;
      for (const listener of this.statusListeners) listener(message.up, message.reason);
    }
  };

  private call<T>(op: StoreOp, ...args: unknown[]): Promise<T> {
    return this.calls.call<T>(op, args);
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
  tokenIssued(jid: string, nodeId: string, expiresAt: number): Promise<void> {
    return this.call("tokenIssued", jid, nodeId, expiresAt);
  }
  tokenNode(jid: string): Promise<string | null> {
    return this.call("tokenNode", jid);
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
    this.calls.close("the worker is stopping");
  }
}
