import { setTimeout as sleep } from "node:timers/promises";
import type { NodeView } from "../cluster/node.js";
import type { NodeTableHolder } from "../cluster/node-table-holder.js";
import { UpstreamError } from "../errors.js";
import type { LineLogger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { giveBack, type RouteDecision, type RouteRequest, type Router } from "../router/router.js";

/** The first pause before refused nodes are dialed again; it doubles each time. */
const RETRY_FIRST_MS = 100;

/** Waits `ms`; false when the client left meanwhile. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** How one transport reaches a node: TCP with its stream setup, or the node's WebSocket endpoint. */
export interface NodeDial<T> {
  /** Why this transport cannot reach `node` at all (no address for it), or null. */
  unusable(node: NodeView): string | null;
  /** Dials `node` for the client; rejects with an UpstreamError. */
  dial(node: NodeView): Promise<T>;
}

export type DialOutcome<T> = { decision: RouteDecision; connection: T } | { outcome: "no-node" } | { outcome: "abandoned" };

/**
 * Asks the router for a node and dials it, the same way for every transport:
 * a failed dial asks the router again without that node; the JID's own node,
 * when it only failed a dial, is rechecked by a probe before its users move;
 * when no node is left, the refused ones are dialed again with a short backoff
 * until `timeoutMs` has passed since the first attempt, so a node restarting
 * for a second is waited for, not refused. The client leaving (`signal`)
 * stops it all, and a fresh strategy choice it held is given back.
 */
export async function dialChosenNode<T>(
  router: Router,
  nodes: NodeTableHolder,
  metrics: Metrics,
  request: Omit<RouteRequest, "exclude">,
  transport: NodeDial<T>,
  options: { timeoutMs: number; signal: AbortSignal; log: LineLogger },
): Promise<DialOutcome<T>> {
  const { signal, log } = options;
  /** Nodes this transport cannot reach: never asked for again, but their users stay theirs. */
  const unreachable = new Set<string>();
  /** Nodes whose dial failed this round: dialed again after a pause. */
  const refused = new Set<string>();
  const exclude = new Set<string>();
  const deadline = Date.now() + options.timeoutMs;
  let backoffMs = RETRY_FIRST_MS;
  let recheckedOwner = false;
  const abandoned = (decision?: RouteDecision): DialOutcome<T> => {
    if (decision !== undefined) giveBack(decision);
    return { outcome: "abandoned" };
  };
  for (;;) {
    if (signal.aborted) return abandoned();
    exclude.clear();
    for (const id of refused) exclude.add(id);
    const decision = await router.route({ ...request, exclude, unreachable }, log);
    if (decision === null) {
      if (refused.size === 0 || Date.now() + backoffMs > deadline) return { outcome: "no-node" };
      if (!(await pause(backoffMs, signal))) return abandoned();
      backoffMs *= 2;
      refused.clear();
      continue;
    }
    const { node } = decision;
    const why = transport.unusable(node);
    if (why !== null) {
      log.warn({ node: node.id }, why);
      unreachable.add(node.id);
      giveBack(decision);
      continue;
    }
    let connection: T;
    try {
      connection = await transport.dial(node);
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      if (signal.aborted) return abandoned(decision);
      metrics.dialFailures.inc({ node: node.id });
      log.warn({ node: node.id, err: err.message, code: err.code }, "node dial failed");
      if (err.nodeFault) {
        nodes.reportDialFailure(node.id);
        // The JID's own node may only have been slow: let a probe decide before its users move.
        if (decision.via === "directory" && !recheckedOwner) {
          recheckedOwner = true;
          const settled = await nodes.settled(node.id, options.timeoutMs);
          if (settled?.health === "up") continue;
        }
      }
      // Its claim stays: the next decision names this node stale and claims over it.
      refused.add(node.id);
      continue;
    }
    return { decision, connection };
  }
}
