import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NodeTable, type NodeSpec } from "../../src/cluster/node.js";
import { Router } from "../../src/router/router.js";
import { hashStrategy, leastConnStrategy } from "../../src/router/strategies.js";
import { MemoryStore } from "../../src/store/memory-store.js";

const spec = (id: string, extra: Partial<NodeSpec> = {}): NodeSpec => ({
  id,
  weight: 1,
  domains: [],
  internal: { host: "127.0.0.1", port: 1 },
  external: { host: "127.0.0.1", port: 1 },
  ...extra,
});

function setup(specs: NodeSpec[], zone?: string) {
  const store = new MemoryStore(specs, { affinityGraceMs: 60_000 });
  const router = new Router(store, leastConnStrategy, NodeTable.fromSpecs(specs), zone);
  return { store, router };
}

describe("Router", () => {
  it("sends every resource of a bare JID to the node that holds it", async () => {
    const { store, router } = setup([spec("n1"), spec("n2"), spec("n3")]);
    const first = await router.route({ jid: "alice@lb.test", domain: "lb.test" });
    await store.connectionOpened("alice@lb.test", first!.node.id);
    // Load the chosen node so least-conn alone would pick another.
    for (let i = 0; i < 5; i++) await store.connectionOpened(null, first!.node.id);
    const second = await router.route({ jid: "alice@lb.test", domain: "lb.test" });
    assert.equal(second!.node.id, first!.node.id);
    assert.equal(second!.via, "directory");
  });

  it("moves a JID off a node that went down, and records the move", async () => {
    const { store, router } = setup([spec("n1"), spec("n2")]);
    await store.claim("bob@lb.test", "n1", []);
    router.setTable(router.table.withState("n1", "down"));
    const moved = await router.route({ jid: "bob@lb.test", domain: "lb.test" });
    assert.equal(moved!.node.id, "n2");
    assert.equal(await store.lookup("bob@lb.test"), "n2");
  });

  it("never sends a new user to a draining node, and skips excluded nodes", async () => {
    const { router } = setup([spec("n1"), spec("n2"), spec("n3")]);
    router.setTable(router.table.withState("n1", "draining"));
    for (let i = 0; i < 20; i++) {
      const d = await router.route({ jid: `u${i}@lb.test`, domain: "lb.test", exclude: new Set(["n2"]) });
      assert.equal(d!.node.id, "n3");
    }
  });

  it("only uses nodes that serve the domain", async () => {
    const { router } = setup([spec("n1", { domains: ["a.test"] }), spec("n2", { domains: ["b.test"] })]);
    assert.equal((await router.route({ jid: "x@b.test", domain: "b.test" }))!.node.id, "n2");
    assert.equal(await router.route({ jid: "x@c.test", domain: "c.test" }), null);
  });

  it("prefers its own zone and falls back to others when the zone has no node up", async () => {
    const { router } = setup([spec("a1", { zone: "a" }), spec("b1", { zone: "b" })], "a");
    assert.equal((await router.route({ jid: "z@lb.test", domain: "lb.test" }))!.node.id, "a1");
    router.setTable(router.table.withState("a1", "down"));
    assert.equal((await router.route({ jid: "y@lb.test", domain: "lb.test" }))!.node.id, "b1");
  });

  it("lets the first of two concurrent logins of one JID win the claim", async () => {
    const specs = [spec("n1"), spec("n2"), spec("n3"), spec("n4")];
    const store = new MemoryStore(specs, { affinityGraceMs: 60_000 });
    const routers = [new Router(store, hashStrategy, NodeTable.fromSpecs(specs)), new Router(store, leastConnStrategy, NodeTable.fromSpecs(specs))];
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => routers[i % 2]!.route({ jid: "race@lb.test", domain: "lb.test" })));
    assert.equal(new Set(results.map((r) => r!.node.id)).size, 1);
  });

  it("answers null when no node is available", async () => {
    const { router } = setup([spec("n1")]);
    router.setTable(router.table.withState("n1", "down"));
    assert.equal(await router.route({ jid: "a@lb.test", domain: "lb.test" }), null);
  });
});
