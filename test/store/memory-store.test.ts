import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { NodeSpec } from "../../src/cluster/node.js";
import { MemoryStore } from "../../src/store/memory-store.js";
import type { StoredNode } from "../../src/store/store.js";

describe("MemoryStore session directory", () => {
  let now = 1_000_000;
  const store = new MemoryStore([], { affinityTtlMs: 300_000 }, () => now);
  after(() => store.close());

  it("keeps a JID on its node while a connection is open, then for the grace period", async () => {
    assert.equal((await store.claim("a@lb.test", "n1", [])).owner, "n1");
    await store.connectionOpened("a@lb.test", "n1");
    now += 3_600_000;
    assert.equal(await store.lookup("a@lb.test"), "n1", "held while open, however long");
    await store.connectionClosed("a@lb.test", "n1");
    now += 299_000;
    assert.equal(await store.lookup("a@lb.test"), "n1", "held within the grace period (resumption)");
    now += 2_000;
    assert.equal(await store.lookup("a@lb.test"), null, "released after the grace period");
  });

  it("claims atomically: an owner stays unless it is stale", async () => {
    assert.deepEqual(await store.claim("b@lb.test", "n1", []), { owner: "n1", wrote: true });
    assert.deepEqual(await store.claim("b@lb.test", "n2", []), { owner: "n1", wrote: false });
    assert.deepEqual(await store.claim("b@lb.test", "n1", []), { owner: "n1", wrote: false }, "the owner claiming again writes nothing");
    assert.deepEqual(await store.claim("b@lb.test", "n2", ["n1"]), { owner: "n2", wrote: true });
  });

  it("counts load: open connections, and apart from them redirects within the grace period", async () => {
    await store.connectionOpened("c@lb.test", "n3");
    await store.connectionOpened(null, "n3");
    await store.redirected("d@lb.test", "n4");
    await store.redirected("e@lb.test", "n3");
    assert.deepEqual((await store.loads()).get("n3"), { connections: 2, redirects: 1 });
    assert.deepEqual((await store.loads()).get("n4"), { connections: 0, redirects: 1 });
    await store.connectionClosed(null, "n3");
    now += 301_000;
    const loads = await store.loads();
    assert.deepEqual(loads.get("n3"), { connections: 1, redirects: 0 });
    assert.equal(loads.get("n4"), undefined);
    await store.connectionClosed("c@lb.test", "n3");
    assert.equal((await store.loads()).size, 0);
  });

  it("counts a JID's redirects once, on the node of its latest, for the grace period from it; each anonymous one", async () => {
    for (let i = 0; i < 50; i++) await store.redirected("again@lb.test", "n5");
    assert.deepEqual((await store.loads()).get("n5"), { connections: 0, redirects: 1 }, "the same JID again and again is one user");
    now += 200_000;
    await store.redirected("again@lb.test", "n6");
    await store.redirected(null, "n6");
    await store.redirected(null, "n6");
    let loads = await store.loads();
    assert.equal(loads.get("n5"), undefined, "moved with its latest redirect");
    assert.deepEqual(loads.get("n6"), { connections: 0, redirects: 3 });
    now += 200_000;
    assert.deepEqual((await store.loads()).get("n6"), { connections: 0, redirects: 3 }, "the grace period runs from the latest redirect");
    now += 101_000;
    loads = await store.loads();
    assert.equal(loads.get("n6"), undefined);
  });
});

describe("MemoryStore FAST tokens", () => {
  let now = 1_000_000;
  const store = new MemoryStore([], { affinityTtlMs: 300_000 }, () => now);
  after(() => store.close());

  it("names the node that issued a JID's latest token until it expires", async () => {
    await store.tokenIssued("f@lb.test", "n1", now + 60_000);
    await store.tokenIssued("f@lb.test", "n2", now + 120_000);
    assert.equal(await store.tokenNode("f@lb.test"), "n2");
    await store.tokenIssued("old@lb.test", "n1", now - 1);
    assert.equal(await store.tokenNode("old@lb.test"), null, "an expired token is not remembered");
    now += 120_001;
    assert.equal(await store.tokenNode("f@lb.test"), null);
  });
});

describe("MemoryStore release", () => {
  const store = new MemoryStore([], { affinityTtlMs: 300_000 });
  after(() => store.close());

  it("forgets a refused login's claim, so a flood of wrong passwords leaves nothing behind", async () => {
    for (let i = 0; i < 1000; i++) {
      const jid = `nobody${i}@lb.test`;
      assert.equal((await store.claim(jid, "n1", [])).owner, "n1");
      await store.release(jid, "n1");
      assert.equal(await store.lookup(jid), null);
    }
    assert.equal((await store.claim("nobody0@lb.test", "n2", [])).owner, "n2", "no entry left to win the claim");
  });

  it("keeps an entry a connection or a redirect confirmed, or that names another node", async () => {
    await store.claim("open@lb.test", "n1", []);
    await store.connectionOpened("open@lb.test", "n1");
    await store.release("open@lb.test", "n1");
    assert.equal(await store.lookup("open@lb.test"), "n1", "an open connection holds it");

    await store.connectionClosed("open@lb.test", "n1");
    await store.release("open@lb.test", "n1");
    assert.equal(await store.lookup("open@lb.test"), "n1", "within the grace period (resumption): a wrong password cannot unpin the user");

    await store.claim("sent@lb.test", "n1", []);
    await store.redirected("sent@lb.test", "n1");
    await store.release("sent@lb.test", "n1");
    assert.equal(await store.lookup("sent@lb.test"), "n1");

    await store.claim("moved@lb.test", "n2", []);
    await store.release("moved@lb.test", "n1");
    assert.equal(await store.lookup("moved@lb.test"), "n2");
  });
});

describe("MemoryStore clean close", () => {
  let now = 1_000_000;
  const store = new MemoryStore([], { affinityTtlMs: 300_000 }, () => now);
  after(() => store.close());
  const session = async (jid: string, node = "n1", connections = 1): Promise<void> => {
    await store.claim(jid, node, []);
    for (let i = 0; i < connections; i++) await store.connectionOpened(jid, node);
  };

  it("forgets a JID at once when its last connection ends with the client closing its stream", async () => {
    await session("bye@lb.test");
    await store.connectionClosed("bye@lb.test", "n1", true);
    assert.equal(await store.lookup("bye@lb.test"), null, "nothing to resume: no grace period");
    assert.deepEqual(await store.claim("bye@lb.test", "n2", []), { owner: "n2", wrote: true }, "its next login is placed afresh");
  });

  it("keeps it while another connection is open, and for the grace period after a connection that broke", async () => {
    await session("two@lb.test", "n1", 2);
    await store.connectionClosed("two@lb.test", "n1", true);
    assert.equal(await store.lookup("two@lb.test"), "n1", "one connection is still open");
    await store.connectionClosed("two@lb.test", "n1", true);
    assert.equal(await store.lookup("two@lb.test"), null);

    await session("phone@lb.test", "n1", 2);
    await store.connectionClosed("phone@lb.test", "n1", false); // the phone's connection broke: it may resume
    now += 100_000;
    await store.connectionClosed("phone@lb.test", "n1", true); // the desktop logs out
    assert.equal(await store.lookup("phone@lb.test"), "n1", "the broken connection may still resume on n1");
    now += 199_000;
    assert.equal(await store.lookup("phone@lb.test"), "n1");
    now += 2_000;
    assert.equal(await store.lookup("phone@lb.test"), null, "gone when the broken one's grace period ends, not the clean close's");

    await session("lost@lb.test");
    await store.connectionClosed("lost@lb.test", "n1", false);
    now += 299_000;
    assert.equal(await store.lookup("lost@lb.test"), "n1", "a connection that broke keeps the whole grace period");
  });

  it("keeps it through a clean close for the grace period of a redirect", async () => {
    await session("sent@lb.test");
    await store.redirected("sent@lb.test", "n1"); // another resource went to the node itself
    await store.connectionClosed("sent@lb.test", "n1", true);
    now += 299_000;
    assert.equal(await store.lookup("sent@lb.test"), "n1");
    now += 2_000;
    assert.equal(await store.lookup("sent@lb.test"), null);
  });

  it("forgets what could resume on a stale node once the JID moves", async () => {
    await session("moves@lb.test", "n1", 2);
    await store.connectionClosed("moves@lb.test", "n1", false); // broke: n1 is stopping
    assert.deepEqual(await store.claim("moves@lb.test", "n2", ["n1"]), { owner: "n2", wrote: true });
    await store.connectionOpened("moves@lb.test", "n2");
    await store.connectionClosed("moves@lb.test", "n1", true);
    await store.connectionClosed("moves@lb.test", "n2", true);
    assert.equal(await store.lookup("moves@lb.test"), null, "nothing of n1's could resume on n2");
  });
});

describe("MemoryStore drain", () => {
  const node = (id: string): NodeSpec => ({ id, weight: 1, domains: [], internal: { host: "127.0.0.1", port: 1 }, external: { host: "127.0.0.1", port: 1 } });
  const store = new MemoryStore([node("n1"), node("n2")], { affinityTtlMs: 300_000 });
  after(() => store.close());
  const draining = (nodes: readonly StoredNode[]): string[] => nodes.filter((n) => n.draining).map((n) => n.id);

  it("lists static nodes with their drain flag, and tells watchers only when it changes", async () => {
    const seen: StoredNode[][] = [];
    const unwatch = store.watchNodes((nodes) => seen.push(nodes));
    assert.deepEqual(
      (await store.listNodes()).map((n) => [n.id, n.source, n.draining]),
      [
        ["n1", "static", false],
        ["n2", "static", false],
      ],
    );
    await store.drain("n2");
    await store.drain("n2");
    await store.drain("unknown");
    assert.deepEqual(draining(await store.listNodes()), ["n2"]);
    assert.deepEqual(seen.map(draining), [["n2"]], "one call: the repeat and the unknown id change nothing");
    await store.undrain("n2");
    assert.deepEqual(seen.map(draining), [["n2"], []]);
    unwatch();
    await store.drain("n1");
    assert.equal(seen.length, 2, "no call after unsubscribing");
  });
});
