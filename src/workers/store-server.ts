import type { Worker } from "node:cluster";
import type { ClusterStore } from "../store/store.js";
import { answerCalls } from "./ipc-calls.js";
import type { PrimaryMessage, StoreOp } from "./messages.js";
import { Tally } from "./tally.js";

/**
 * Serves the primary's store to one worker: answers its calls, and passes on
 * membership and status. Returns what stops serving it, for when the worker
 * has exited: the connections it still held open are closed in the store then,
 * as if they had broken, so they stop counting towards their node's load and
 * their JIDs' entries run out after the affinity grace period.
 */
export function serveStore(store: ClusterStore, worker: Worker): () => void {
  const send = (message: PrimaryMessage): void => {
    if (worker.isConnected()) worker.send(message);
  };
  // Keyed by JSON of [jid, node]: one string per pair, a null jid (anonymous) included.
  const open = new Tally<string>();
  const stopAnswering = answerCalls<StoreOp>(worker, "store", (op, args) => {
    if (op === "connectionOpened") open.add(JSON.stringify(args.slice(0, 2)));
    else if (op === "connectionClosed") open.remove(JSON.stringify(args.slice(0, 2)));
    return answer(store, op, args);
  });
  const stops = [store.watchNodes((nodes) => send({ type: "xmpp-lb:nodes", nodes })), store.onStatus((up, reason) => send({ type: "xmpp-lb:status", up, reason }))];
  return () => {
    stopAnswering();
    for (const stop of stops) stop();
    for (const key of open.takeAll()) {
      const [jid, nodeId] = JSON.parse(key) as [string | null, string];
      // As for a lease's own calls, a store failure costs affinity at worst (the embedded store cannot fail).
      store.connectionClosed(jid, nodeId).catch(() => {});
    }
  };
}

async function answer(store: ClusterStore, op: StoreOp, args: unknown[]): Promise<unknown> {
  const a = args as never[];
  switch (op) {
    case "listNodes":
      return store.listNodes();
    case "lookup":
      return store.lookup(a[0]!);
    case "tokenIssued":
      return store.tokenIssued(a[0]!, a[1]!, a[2]!);
    case "tokenNode":
      return store.tokenNode(a[0]!);
    case "claim":
      return store.claim(a[0]!, a[1]!, a[2]!);
    case "release":
      return store.release(a[0]!, a[1]!);
    case "connectionOpened":
      return store.connectionOpened(a[0]!, a[1]!);
    case "connectionClosed":
      return store.connectionClosed(a[0]!, a[1]!, a[2] === true);
    case "redirected":
      return store.redirected(a[0]!, a[1]!);
    case "loads":
      return [...(await store.loads())];
    case "drain":
      return store.drain(a[0]!);
    case "undrain":
      return store.undrain(a[0]!);
    case "waitUntilUp":
      return store.waitUntilUp(a[0]!);
  }
}
