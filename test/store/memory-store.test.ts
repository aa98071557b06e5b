import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { MemoryStore } from "../../src/store/memory-store.js";

describe("MemoryStore session directory", () => {
  let now = 1_000_000;
  const store = new MemoryStore([], { affinityGraceMs: 300_000 }, () => now);
  after(() => store.close());

  it("keeps a JID on its node while a connection is open, then for the grace period", async () => {
    assert.equal(await store.claim("a@lb.test", "n1", []), "n1");
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
    assert.equal(await store.claim("b@lb.test", "n1", []), "n1");
    assert.equal(await store.claim("b@lb.test", "n2", []), "n1");
    assert.equal(await store.claim("b@lb.test", "n2", ["n1"]), "n2");
  });

  it("counts load: open connections plus redirects within the grace period", async () => {
    await store.connectionOpened("c@lb.test", "n3");
    await store.connectionOpened(null, "n3");
    await store.redirected("d@lb.test", "n4");
    assert.equal((await store.loads()).get("n3"), 2);
    assert.equal((await store.loads()).get("n4"), 1);
    await store.connectionClosed(null, "n3");
    now += 301_000;
    const loads = await store.loads();
    assert.equal(loads.get("n3"), 1);
    assert.equal(loads.get("n4"), undefined);
  });
});
