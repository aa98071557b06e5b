import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NodeTable, type NodeSpec } from "../../src/cluster/node.js";
import { NodeTableHolder } from "../../src/cluster/node-table-holder.js";
import { createLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
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

const log = createLogger("silent");

function setup(specs: NodeSpec[], zone?: string) {
  const store = new MemoryStore(specs, { affinityTtlMs: 60_000 });
  const nodes = new NodeTableHolder(NodeTable.fromSpecs(specs));
  const router = new Router(store, leastConnStrategy, nodes, { zone, metrics: new Metrics(), storeTimeoutMs: 250 });
  return { store, router, nodes };
}

describe("Router", () => {
  it("sends every resource of a bare JID to the node that holds it", async () => {
    const { store, router } = setup([spec("n1"), spec("n2"), spec("n3")]);
    const first = await router.route({ jid: "alice@lb.test", domain: "lb.test" }, log);
    await store.connectionOpened("alice@lb.test", first!.node.id);
    // Load the chosen node so least-conn alone would pick another.
    for (let i = 0; i < 5; i++) await store.connectionOpened(null, first!.node.id);
    const second = await router.route({ jid: "alice@lb.test", domain: "lb.test" }, log);
    assert.equal(second!.node.id, first!.node.id);
    assert.equal(second!.via, "directory");
  });

  it("moves a JID off a node that went down, and records the move", async () => {
    const { store, router, nodes } = setup([spec("n1"), spec("n2")]);
    await store.claim("bob@lb.test", "n1", []);
    nodes.setHealth("n1", "down");
    const moved = await router.route({ jid: "bob@lb.test", domain: "lb.test" }, log);
    assert.equal(moved!.node.id, "n2");
    assert.equal(await store.lookup("bob@lb.test"), "n2");
  });

  it("asks the store once per login, for a new user and a returning one alike", async () => {
    const { store, router } = setup([spec("n1"), spec("n2"), spec("n3")]);
    const calls: string[] = [];
    for (const op of ["lookup", "claim"] as const) {
      const real = store[op].bind(store) as (...a: never[]) => Promise<unknown>;
      (store as unknown as Record<string, unknown>)[op] = (...a: never[]) => (calls.push(op), real(...a));
    }
    const fresh = await router.route({ jid: "new@lb.test", domain: "lb.test" }, log);
    assert.equal(fresh!.via, "strategy");
    assert.deepEqual(calls, ["claim"]);
    calls.length = 0;
    const again = await router.route({ jid: "new@lb.test", domain: "lb.test" }, log);
    assert.equal(again!.node.id, fresh!.node.id);
    assert.equal(again!.via, "directory");
    assert.deepEqual(calls, ["claim"]);
  });

  it("replaces an owner the node table no longer knows", async () => {
    const { store, router } = setup([spec("n1"), spec("n2")]);
    await store.claim("orphan@lb.test", "gone", []);
    const moved = await router.route({ jid: "orphan@lb.test", domain: "lb.test" }, log);
    assert.equal(moved!.via, "strategy");
    assert.equal(await store.lookup("orphan@lb.test"), moved!.node.id);
  });

  it("never sends a new user to a draining node, and skips excluded nodes", async () => {
    const { router, nodes } = setup([spec("n1"), spec("n2"), spec("n3")]);
    nodes.update((t) => t.withDraining("n1", true));
    for (let i = 0; i < 20; i++) {
      const d = await router.route({ jid: `u${i}@lb.test`, domain: "lb.test", exclude: new Set(["n2"]) }, log);
      assert.equal(d!.node.id, "n3");
    }
  });

  it("only uses nodes that serve the domain", async () => {
    const { router } = setup([spec("n1", { domains: ["a.test"] }), spec("n2", { domains: ["b.test"] })]);
    assert.equal((await router.route({ jid: "x@b.test", domain: "b.test" }, log))!.node.id, "n2");
    assert.equal(await router.route({ jid: "x@c.test", domain: "c.test" }, log), null);
  });

  it("prefers its own zone and falls back to others when the zone has no node up", async () => {
    const { router, nodes } = setup([spec("a1", { zone: "a" }), spec("b1", { zone: "b" })], "a");
    assert.equal((await router.route({ jid: "z@lb.test", domain: "lb.test" }, log))!.node.id, "a1");
    nodes.setHealth("a1", "down");
    assert.equal((await router.route({ jid: "y@lb.test", domain: "lb.test" }, log))!.node.id, "b1");
  });

  it("lets the first of two concurrent logins of one JID win the claim", async () => {
    const specs = [spec("n1"), spec("n2"), spec("n3"), spec("n4")];
    const store = new MemoryStore(specs, { affinityTtlMs: 60_000 });
    const router = (strategy: typeof hashStrategy): Router => new Router(store, strategy, new NodeTableHolder(NodeTable.fromSpecs(specs)), { metrics: new Metrics(), storeTimeoutMs: 250 });
    const routers = [router(hashStrategy), router(leastConnStrategy)];
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => routers[i % 2]!.route({ jid: "race@lb.test", domain: "lb.test" }, log)));
    assert.equal(new Set(results.map((r) => r!.node.id)).size, 1);
  });

  it("keeps a JID on a suspect node, but sends it no new users", async () => {
    const { store, router, nodes } = setup([spec("n1"), spec("n2")]);
    await store.claim("kim@lb.test", "n1", []);
    await store.connectionOpened("kim@lb.test", "n1");
    nodes.reportDialFailure("n1");
    assert.equal(nodes.table.get("n1")?.state, "suspect");
    const kept = await router.route({ jid: "kim@lb.test", domain: "lb.test" }, log);
    assert.equal(kept!.node.id, "n1", "one slow dial must not split an account across nodes");
    for (let i = 0; i < 10; i++) assert.equal((await router.route({ jid: `new${i}@lb.test`, domain: "lb.test" }, log))!.node.id, "n2");
    nodes.setHealth("n1", "down");
    assert.equal((await router.route({ jid: "kim@lb.test", domain: "lb.test" }, log))!.node.id, "n2", "a confirmed-down node gives its users up");
  });

  it("forgets the claim of a login the node refused, and keeps the entry while a connection is open", async () => {
    const { store, router } = setup([spec("n1"), spec("n2")]);
    const refused = await router.route({ jid: "mallory@lb.test", domain: "lb.test" }, log);
    refused!.lease.refused();
    await new Promise((r) => setImmediate(r));
    assert.equal(await store.lookup("mallory@lb.test"), null);
    const accepted = await router.route({ jid: "liz@lb.test", domain: "lb.test" }, log);
    accepted!.lease.opened();
    await new Promise((r) => setImmediate(r));
    assert.equal(await store.lookup("liz@lb.test"), accepted!.node.id);
  });

  it("dials a node marked down when none is up (panic), the JID's own first, and claims nothing", async () => {
    const { store, router, nodes } = setup([spec("n1"), spec("n2"), spec("n3")]);
    await store.claim("a@lb.test", "n3", []);
    for (const id of ["n1", "n2", "n3"]) nodes.setHealth(id, "down");
    const own = await router.route({ jid: "a@lb.test", domain: "lb.test" }, log);
    assert.equal(own!.node.id, "n3");
    assert.equal(own!.via, "panic");
    const fresh = await router.route({ jid: "b@lb.test", domain: "lb.test" }, log);
    assert.equal(fresh!.via, "panic");
    assert.equal(await store.lookup("b@lb.test"), null, "a panic choice is not recorded");
  });

  it("sends no new user to a node at its maxconn, and none at all when every node is full", async () => {
    const { store, router } = setup([spec("n1", { maxconn: 2 }), spec("n2", { maxconn: 3 })]);
    for (let i = 0; i < 5; i++) {
      const d = await router.route({ jid: `cap${i}@lb.test`, domain: "lb.test" }, log);
      assert.ok(d !== null, `user ${i} found a node`);
      await store.connectionOpened(`cap${i}@lb.test`, d.node.id);
    }
    const loads = await store.loads();
    assert.deepEqual([loads.get("n1")?.connections, loads.get("n2")?.connections], [2, 3]);
    assert.equal(await router.route({ jid: "cap5@lb.test", domain: "lb.test" }, log), null);
    assert.equal((await router.route({ jid: "cap0@lb.test", domain: "lb.test" }, log))?.via, "directory", "a full node's own users still reach it");
  });

  it("never counts redirects toward maxconn: any number of made-up JIDs leaves room for real users", async () => {
    const { store, router } = setup([spec("n1", { maxconn: 2 }), spec("n2", { maxconn: 2 })]);
    for (let i = 0; i < 40; i++) {
      const d = await router.route({ jid: `made-up${i}@lb.test`, domain: "lb.test" }, log);
      assert.ok(d !== null, `redirect ${i} found a node`);
      await store.redirected(`made-up${i}@lb.test`, d.node.id);
    }
    const loads = await store.loads();
    assert.deepEqual([loads.get("n1")?.redirects, loads.get("n2")?.redirects], [20, 20], "least-conn still spreads redirects");
    // Forwarded sessions the nodes accepted still fill them.
    for (let i = 0; i < 4; i++) {
      const d = await router.route({ jid: `real${i}@lb.test`, domain: "lb.test" }, log);
      assert.ok(d !== null, `real user ${i} found a node`);
      await store.connectionOpened(`real${i}@lb.test`, d.node.id);
    }
    assert.equal(await router.route({ jid: "real4@lb.test", domain: "lb.test" }, log), null);
  });

  it("counts a JID redirected again and again once, so one JID cannot steer everyone else away from its node", async () => {
    const { store, router } = setup([spec("n1"), spec("n2")]);
    const pinned = await router.route({ jid: "pinned@lb.test", domain: "lb.test" }, log);
    for (let i = 0; i < 50; i++) {
      const d = await router.route({ jid: "pinned@lb.test", domain: "lb.test" }, log);
      assert.equal(d!.node.id, pinned!.node.id);
      await store.redirected("pinned@lb.test", d!.node.id);
    }
    const placed = new Map<string, number>();
    for (let i = 0; i < 10; i++) {
      const d = await router.route({ jid: `new${i}@lb.test`, domain: "lb.test" }, log);
      await store.redirected(`new${i}@lb.test`, d!.node.id);
      placed.set(d!.node.id, (placed.get(d!.node.id) ?? 0) + 1);
    }
    assert.ok((placed.get(pinned!.node.id) ?? 0) >= 4, `new users on the pinned JID's node: ${placed.get(pinned!.node.id) ?? 0} of 10`);
  });

  it("sends a FAST token login to the node that issued the JID's token, full or not, while it is up; a password login goes by the strategy", async () => {
    const { store, router, nodes } = setup([spec("n1", { maxconn: 1 }), spec("n2")]);
    await store.connectionOpened(null, "n1"); // n1 is full: least-conn and maxconn both point away from it
    await store.tokenIssued("dave@lb.test", "n1", Date.now() + 60_000);
    const password = await router.route({ jid: "dave@lb.test", domain: "lb.test" }, log);
    assert.equal(password!.node.id, "n2");
    password!.lease.refused(); // the node refused the password: the claim goes
    await new Promise((r) => setImmediate(r));
    const token = await router.route({ jid: "dave@lb.test", domain: "lb.test", token: true }, log);
    assert.equal(token!.node.id, "n1");
    assert.equal(token!.via, "token");
    token!.lease.refused();
    await new Promise((r) => setImmediate(r));
    nodes.setHealth("n1", "down");
    const away = await router.route({ jid: "dave@lb.test", domain: "lb.test", token: true }, log);
    assert.equal(away!.node.id, "n2", "the token's node is down: the login goes elsewhere (the client falls back to its password)");
  });

  it("keeps a token login with the JID's live directory entry, so one account's sessions stay on one node", async () => {
    const { store, router } = setup([spec("n1"), spec("n2")]);
    await store.tokenIssued("erin@lb.test", "n1", Date.now() + 60_000);
    await store.claim("erin@lb.test", "n2", []);
    await store.connectionOpened("erin@lb.test", "n2");
    const token = await router.route({ jid: "erin@lb.test", domain: "lb.test", token: true }, log);
    assert.equal(token!.node.id, "n2");
    assert.equal(token!.via, "directory");
  });

  it("answers null when no node may be dialed: all drained or excluded", async () => {
    const { router, nodes } = setup([spec("n1"), spec("n2")]);
    nodes.setHealth("n1", "down");
    nodes.update((t) => t.withDraining("n2", true));
    assert.equal(await router.route({ jid: "a@lb.test", domain: "lb.test", exclude: new Set(["n1"]) }, log), null);
  });
});
