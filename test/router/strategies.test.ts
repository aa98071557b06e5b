import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NodeView } from "../../src/cluster/node.js";
import { hashStrategy, leastConnStrategy, randomStrategy } from "../../src/router/strategies.js";
import type { NodeLoad } from "../../src/store/store.js";

const node = (id: string, weight = 1): NodeView => ({
  id,
  weight,
  state: "up",
  health: "up",
  draining: false,
  source: "static",
  domains: [],
  internal: { host: "10.0.0.1", port: 5222 },
  external: { host: "xmpp.example", port: 5222 },
});
const jids = (n: number): string[] => Array.from({ length: n }, (_, i) => `user${i}@lb.test`);
const none = new Map<string, NodeLoad>();
/** Loads with connections only. */
const connections = (counts: Record<string, number>): Map<string, NodeLoad> => new Map(Object.entries(counts).map(([id, n]) => [id, { connections: n, redirects: 0 }]));

function tally(pick: (key: string) => NodeView, keys: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) {
    const id = pick(key).id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe("hash strategy (weighted rendezvous)", () => {
  const nodes = [node("n1"), node("n2"), node("n3")];
  it("is a pure function of the JID and the node set: every instance agrees", () => {
    for (const jid of jids(50)) assert.equal(hashStrategy.pick(nodes, jid, none).id, hashStrategy.pick([...nodes].reverse(), jid, none).id);
  });
  it("spreads users evenly over equal nodes", () => {
    const counts = tally((k) => hashStrategy.pick(nodes, k, none), jids(3000));
    for (const n of nodes) assert.ok(Math.abs(counts.get(n.id)! - 1000) < 120, `${n.id}: ${counts.get(n.id)}`);
  });
  it("stays even over many nodes", () => {
    const many = Array.from({ length: 10 }, (_, i) => node(`node-${i}`));
    const counts = tally((k) => hashStrategy.pick(many, k, none), jids(20000));
    for (const n of many) assert.ok(Math.abs(counts.get(n.id)! - 2000) < 200, `${n.id}: ${counts.get(n.id)}`);
  });
  it("follows weights", () => {
    const weighted = [node("n1", 3), node("n2", 1)];
    const counts = tally((k) => hashStrategy.pick(weighted, k, none), jids(4000));
    assert.ok(Math.abs(counts.get("n1")! - 3000) < 150, `n1: ${counts.get("n1")}`);
  });
  it("moves only the users of a removed node", () => {
    const before = new Map(jids(1000).map((j) => [j, hashStrategy.pick(nodes, j, none).id]));
    const without = nodes.filter((n) => n.id !== "n2");
    for (const [jid, id] of before) if (id !== "n2") assert.equal(hashStrategy.pick(without, jid, none).id, id);
  });
});

describe("least-conn strategy", () => {
  const nodes = [node("n1"), node("n2"), node("n3")];
  it("picks the node with the fewest sessions per unit of weight", () => {
    assert.equal(leastConnStrategy.pick(nodes, "a@lb.test", connections({ n1: 5, n2: 2, n3: 4 })).id, "n2");
    const weighted = [node("n1", 4), node("n2", 1)];
    assert.equal(leastConnStrategy.pick(weighted, "a@lb.test", connections({ n1: 6, n2: 2 })).id, "n1");
  });
  it("counts redirected users beside open connections (redirect mode has no connections)", () => {
    const loads = new Map<string, NodeLoad>([
      ["n1", { connections: 1, redirects: 4 }],
      ["n2", { connections: 3, redirects: 0 }],
      ["n3", { connections: 0, redirects: 4 }],
    ]);
    assert.equal(leastConnStrategy.pick(nodes, "a@lb.test", loads).id, "n2");
  });
  it("breaks ties by hash, so a burst of new users spreads", () => {
    const counts = tally((k) => leastConnStrategy.pick(nodes, k, none), jids(300));
    assert.equal(counts.size, 3);
  });
});

describe("random strategy", () => {
  it("follows weights", () => {
    let seed = 1;
    const random = (): number => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    const strategy = randomStrategy(random);
    const counts = tally(() => strategy.pick([node("n1", 1), node("n2", 3)], "", none), jids(4000));
    assert.ok(Math.abs(counts.get("n2")! - 3000) < 200, `n2: ${counts.get("n2")}`);
  });
});
