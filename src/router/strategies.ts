import { createHash } from "node:crypto";
import type { NodeView } from "../cluster/node.js";

export type StrategyName = "least-conn" | "hash" | "random";
export const STRATEGIES: readonly StrategyName[] = ["least-conn", "hash", "random"];

export interface Strategy {
  readonly name: StrategyName;
  /** Whether pick() reads `loads` (so the router only asks the store when needed). */
  readonly needsLoads: boolean;
  /** Picks one of `candidates` (never empty) for routing key `key`. */
  pick(candidates: readonly NodeView[], key: string, loads: ReadonlyMap<string, number>): NodeView;
}

/** A uniform number in (0, 1) from (key, node id): the same on every balancer instance. */
function unitHash(key: string, nodeId: string): number {
  const digest = createHash("md5").update(nodeId).update("\0").update(key).digest();
  // 52 random bits, shifted off zero so that log() below is finite.
  const hi = digest.readUInt32BE(0) >>> 12;
  const lo = digest.readUInt32BE(4);
  return (hi * 2 ** 32 + lo + 0.5) / 2 ** 52;
}

/**
 * Weighted rendezvous hashing (highest random weight): node n wins key k with
 * probability weight(n) / sum of weights, and removing a node only moves the
 * keys that node held.
 */
export function rendezvousScore(key: string, node: NodeView): number {
  return -node.weight / Math.log(unitHash(key, node.id));
}

function highestScore(candidates: readonly NodeView[], key: string): NodeView {
  let best = candidates[0]!;
  let bestScore = -Infinity;
  for (const node of candidates) {
    const score = rendezvousScore(key, node);
    if (score > bestScore) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

export const hashStrategy: Strategy = {
  name: "hash",
  needsLoads: false,
  pick: (candidates, key) => highestScore(candidates, key),
};

/** Fewest sessions per unit of weight; ties broken by rendezvous hash so they spread evenly. */
export const leastConnStrategy: Strategy = {
  name: "least-conn",
  needsLoads: true,
  pick(candidates, key, loads) {
    let lowest = Infinity;
    let tied: NodeView[] = [];
    for (const node of candidates) {
      const load = (loads.get(node.id) ?? 0) / node.weight;
      if (load < lowest) {
        lowest = load;
        tied = [node];
      } else if (load === lowest) {
        tied.push(node);
      }
    }
    return tied.length === 1 ? tied[0]! : highestScore(tied, key);
  },
};

export function randomStrategy(random: () => number = Math.random): Strategy {
  return {
    name: "random",
    needsLoads: false,
    pick(candidates) {
      const total = candidates.reduce((sum, n) => sum + n.weight, 0);
      let r = random() * total;
      for (const node of candidates) {
        r -= node.weight;
        if (r < 0) return node;
      }
      return candidates[candidates.length - 1]!;
    },
  };
}

export function strategyByName(name: StrategyName): Strategy {
  switch (name) {
    case "least-conn":
      return leastConnStrategy;
    case "hash":
      return hashStrategy;
    case "random":
      return randomStrategy();
  }
}
