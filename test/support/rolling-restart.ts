// Test fixture: one step of a rolling restart of an ejabberd cluster behind
// the balancer, as an operator does it: drain the node (no new users), end its
// sessions while it runs (its users reconnect through the balancer, to other
// nodes), stop it with SIGTERM, start it again on its own spool (it rejoins
// the cluster), wait until the balancer's probes see it up, undrain it.
// Ending the sessions first matters with ejabberd: a SIGTERM ends them racing
// the node's own shutdown, and a message sent to one of its users in the
// moment before they are back can be lost (the README says why).

import type { EjabberdCluster, EjabberdNode } from "./ejabberd.js";
import type { SmClient } from "./sm-client.js";
import { waitFor } from "./wait.js";

export interface RestartHooks {
  /** Takes the node out of routing for new users (store drain, admin POST, `xmpp-lb node drain`). */
  drain(id: string): Promise<void>;
  undrain(id: string): Promise<void>;
  /** Whether the balancer(s) see the node up (health). */
  up(id: string): boolean | Promise<boolean>;
}

export interface RestartStep {
  node: string;
  /** The clients that were on the node when its sessions ended, and where each went. */
  moved: Array<{ jid: string; to: string }>;
  /** When the node's sessions were ended (ms since epoch). */
  endedAt: number;
  /** From then (the command, whose Erlang VM takes ~0.5 s to boot) until the last of them had a session on another node. */
  movedMs: number;
  /** From SIGTERM until the node served c2s again, in the cluster. */
  downMs: number;
}

export async function restartNode(cluster: EjabberdCluster, node: EjabberdNode, clients: readonly SmClient[], hooks: RestartHooks): Promise<RestartStep> {
  await hooks.drain(node.id);
  const movers = clients.filter((c) => c.node === node.id);
  const endedAt = Date.now();
  await node.endSessions();
  await waitFor(`${node.id}'s users back on other nodes`, () => movers.every((c) => c.online && c.node !== node.id), 20_000);
  const movedMs = Date.now() - endedAt;
  const signalled = Date.now();
  await node.stop();
  await node.start();
  await cluster.converged();
  const downMs = Date.now() - signalled;
  await waitFor(`the balancer to see ${node.id} up`, () => hooks.up(node.id), 15_000);
  await hooks.undrain(node.id);
  return { node: node.id, moved: movers.map((c) => ({ jid: c.jid, to: c.node })), endedAt, movedMs, downMs };
}

/** How many clients are on each node, in the cluster's node order. */
export function spread(cluster: EjabberdCluster, clients: readonly SmClient[]): Record<string, number> {
  return Object.fromEntries(cluster.nodes.map((n) => [n.id, clients.filter((c) => c.online && c.node === n.id).length]));
}
