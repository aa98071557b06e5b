import type { NodeView } from "../cluster/node.js";
import type { NodeLoad } from "../store/store.js";

export type StrategyName = "least-conn" | "hash" | "random";
export const STRATEGIES: readonly StrategyName[] = ["least-conn", "hash", "random"];

export interface Strategy {
  /** Whether pick() reads `loads` (so the router only asks the store when needed). */
  readonly needsLoads: boolean;
  /** Picks one of `candidates` (never empty) for routing key `key`. */
  pick(candidates: readonly NodeView[], key: string, loads: ReadonlyMap<string, NodeLoad>): NodeView;
}

/** murmur3's finalizer: full avalanche of a 32-bit value. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Two independent 32-bit hashes of a string (FNV-1a over UTF-16 units, then avalanched). */
function hash2(text: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return [fmix32(a), fmix32(b ^ 0x9e3779b9)];
}

const nodeHashes = new Map<string, [number, number]>();
function nodeHash(id: string): [number, number] {
  let h = nodeHashes.get(id);
  if (h === undefined) {
    h = hash2(`node:${id}`);
    if (nodeHashes.size > 10_000) nodeHashes.clear(); // ids come from configuration; never let it grow without bound
    nodeHashes.set(id, h);
  }
  return h;
}

/**
 * A uniform number in (0, 1) from (key, node id), the same on every balancer
 * instance: the key is hashed once per decision, each node's id once, and the
 * pair is mixed with murmur3's finalizer (no crypto hash on the hot path).
 */
function unitHash(key: [number, number], nodeId: string): number {
  const [c, d] = nodeHash(nodeId);
  const hi = fmix32(Math.imul(key[0] ^ c, 0x9e3779b1) ^ key[1]) >>> 12; // 20 bits
  const lo = fmix32(Math.imul(key[1] ^ d, 0x85ebca77) ^ key[0]); // 32 bits
  // 52 bits, shifted off zero so that log() below is finite.
  return (hi * 2 ** 32 + lo + 0.5) / 2 ** 52;
}

/**
 * Weighted rendezvous hashing (highest random weight): node n wins key k with
 * probability weight(n) / sum of weights, and removing a node only moves the
 * keys that node held.
 */
function highestScore(candidates: readonly NodeView[], key: string): NodeView {
  const keyHash = hash2(key);
  let best = candidates[0]!;
  let bestScore = -Infinity;
  for (const node of candidates) {
    const score = -node.weight / Math.log(unitHash(keyHash, node.id));
    if (score > bestScore) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

export const hashStrategy: Strategy = {
  needsLoads: false,
  pick: (candidates, key) => highestScore(candidates, key),
};

/**
 * Fewest sessions per unit of weight, where a node's sessions are its open
 * forwarded connections plus the JIDs redirected to it (redirect mode has no
 * connections to count); ties broken by rendezvous hash so they spread evenly.
 */
export const leastConnStrategy: Strategy = {
  needsLoads: true,
  pick(candidates, key, loads) {
    let lowest = Infinity;
    let tied: NodeView[] = [];
    for (const node of candidates) {
      const counts = loads.get(node.id);
      const load = counts === undefined ? 0 : (counts.connections + counts.redirects) / node.weight;
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
