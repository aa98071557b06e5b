import type { Worker } from "node:cluster";
import type { ClusterStore } from "../store/store.js";
import { isMessage, type PrimaryMessage, type WorkerMessage } from "./messages.js";

type Call = Extract<WorkerMessage, { type: "xmpp-lb:store-call" }>;

/** Serves the primary's store to one worker: answers its calls, and passes on membership and status. */
export function serveStore(store: ClusterStore, worker: Worker): () => void {
  const send = (message: PrimaryMessage): void => {
    if (worker.isConnected()) worker.send(message);
  };
  const onMessage = (message: unknown): void => {
    if (!isMessage<Call>(message, "xmpp-lb:store-call")) return;
    answer(store, message).then(
      (value) => send({ type: "xmpp-lb:store-answer", id: message.id, ok: true, value }),
      (err: Error) => send({ type: "xmpp-lb:store-answer", id: message.id, ok: false, error: err.message }),
    );
  };
  worker.on("message", onMessage);
  const stops = [store.watchNodes((nodes) => send({ type: "xmpp-lb:nodes", nodes })), store.onStatus((up, reason) => send({ type: "xmpp-lb:status", up, reason }))];
  return () => {
    worker.off("message", onMessage);
    for (const stop of stops) stop();
  };
}

async function answer(store: ClusterStore, call: Call): Promise<unknown> {
  const a = call.args as never[];
  switch (call.op) {
    case "listNodes":
      return store.listNodes();
    case "lookup":
      return store.lookup(a[0]!);
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
