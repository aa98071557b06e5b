import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, afterEach, before, describe, it } from "node:test";
import type { NodeSpec } from "../../src/cluster/node.js";
import { ConfigError, StoreError } from "../../src/errors.js";
import { RedisRegistry } from "../../src/store/redis-registry.js";
import { RedisStore, type RedisStoreOptions } from "../../src/store/redis-store.js";
import { parseRedisUrl } from "../../src/store/redis-url.js";
import type { NodeLoad, StoredNode } from "../../src/store/store.js";
import { startRedis, startRedisCluster, type RedisServer } from "../support/redis.js";

// Short times so the whole file runs in well under a minute: entries live 1 s
// after their last connection (leases renewed every 333 ms), loads are
// published every 100 ms, the node list is re-read every 300 ms.
const GRACE_MS = 1000;
const LOADS_REFRESH_MS = 100;
const TIMEOUT_MS = 250;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const spec = (id: string, port = 5222): NodeSpec => ({ id, internal: { host: "10.0.0.1", port }, external: { host: `${id}.example.test`, port: 5222 }, weight: 1, domains: [] });
const ids = (nodes: readonly StoredNode[]): string[] => nodes.map((n) => n.id);

/** The part of a key Redis Cluster hashes when it has one (the cluster spec): from the first `{` to the next `}`, if not empty. */
function hashTag(key: string): string | null {
  const open = key.indexOf("{");
  if (open === -1) return null;
  const close = key.indexOf("}", open + 1);
  return close === -1 || close === open + 1 ? null : key.slice(open + 1, close);
}

interface Backend {
  url: string;
  servers: RedisServer[];
  stop(): Promise<void>;
}

const backends: Array<{ name: string; start: () => Promise<Backend> }> = [
  {
    name: "standalone",
    start: async () => {
      const server = await startRedis();
      return { url: server.url, servers: [server], stop: () => server.stop() };
    },
  },
  {
    name: "three-master cluster",
    start: async () => {
      const cluster = await startRedisCluster();
      return { url: cluster.url, servers: cluster.servers, stop: () => cluster.stop() };
    },
  },
];

let prefixes = 0;

/** Stores and registries opened by a test, closed after it; each test has its own key prefix. */
function fixture(backend: () => Backend) {
  const open: Array<{ close(): Promise<void> }> = [];
  let prefix = "";
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    prefix = "";
  });
  const currentPrefix = (): string => (prefix ||= `t${++prefixes}:`);
  return {
    prefix: currentPrefix,
    /** A store, connected unless `connected` is false (connecting may take longer than one call may). */
    async store(options: Partial<RedisStoreOptions> = {}, connected = true): Promise<RedisStore> {
      const store = new RedisStore(backend().url, { prefix: currentPrefix(), affinityTtlMs: GRACE_MS, loadsRefreshMs: LOADS_REFRESH_MS, nodeRefreshMs: 300, timeoutMs: TIMEOUT_MS, ...options });
      open.push(store);
      if (connected) await store.waitUntilUp(5000);
      return store;
    },
    async registry(): Promise<RedisRegistry> {
      const registry = new RedisRegistry(backend().url, { prefix: currentPrefix() });
      open.push(registry);
      await registry.waitUntilUp(5000);
      return registry;
    },
    /** Keys matching `pattern` on every server (SCAN). */
    async keys(pattern: string): Promise<string[]> {
      const outputs = await Promise.all(backend().servers.map((s) => s.cli("--scan", "--pattern", pattern)));
      return outputs.flatMap((out) => out.split("\n").filter((line) => line !== ""));
    },
  };
}

/** A balancer instance in a child process that holds a lease and load counts, for SIGKILL. */
async function startDoomedInstance(url: string, prefix: string): Promise<{ kill(): Promise<void> }> {
  const storeModule = new URL("../../src/store/redis-store.ts", import.meta.url).href;
  const code = `
    import { RedisStore } from ${JSON.stringify(storeModule)};
    const store = new RedisStore(${JSON.stringify(url)}, { prefix: ${JSON.stringify(prefix)}, affinityTtlMs: ${GRACE_MS}, loadsRefreshMs: ${LOADS_REFRESH_MS} });
    await store.waitUntilUp(5000);
    await store.claim("doomed@lb.test", "n1", []);
    await store.connectionOpened("doomed@lb.test", "n1");
    await store.connectionOpened(null, "n1");
    setTimeout(() => console.log("ready"), ${LOADS_REFRESH_MS * 3});
    setInterval(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = once(child, "exit");
  const [chunk] = (await Promise.race([once(child.stdout!, "data"), exited.then(() => assert.fail("the child instance exited early"))])) as [Buffer];
  assert.equal(chunk.toString().trim(), "ready");
  return {
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

for (const { name, start } of backends) {
  describe(`RedisStore on ${name}`, () => {
    let backend: Backend;
    before(async () => {
      backend = await start();
    });
    after(() => backend.stop());
    const t = fixture(() => backend);

    it("ends concurrent claims of one JID from two instances on one node", async () => {
      const a = await t.store();
      const b = await t.store();
      const jids = Array.from({ length: 50 }, (_, i) => `race${i}@lb.test`);
      await Promise.all(
        jids.map(async (jid) => {
          const owners = await Promise.all([a.claim(jid, "n1", []), b.claim(jid, "n2", []), a.claim(jid, "n3", []), b.claim(jid, "n1", [])].map(async (c) => (await c).owner));
          assert.equal(new Set(owners).size, 1, `${jid}: ${owners.join(" ")}`);
          assert.equal(await b.lookup(jid), owners[0]);
        }),
      );
      assert.deepEqual(await a.claim("race0@lb.test", "n9", ["n1", "n2", "n3"]), { owner: "n9", wrote: true }, "a stale owner is replaced");
      assert.deepEqual(await b.claim("race0@lb.test", "n1", []), { owner: "n9", wrote: false }, "a live owner is kept, and nothing written");
    });

    it("keeps a lease while a connection is open, and lets it go a grace period after the last close", async () => {
      const a = await t.store();
      const b = await t.store();
      assert.equal((await a.claim("lease@lb.test", "n1", [])).owner, "n1");
      await a.connectionOpened("lease@lb.test", "n1");
      await sleep(GRACE_MS * 2.5);
      assert.equal(await b.lookup("lease@lb.test"), "n1", "renewed past the grace period while open");
      await a.connectionClosed("lease@lb.test", "n1");
      await sleep(GRACE_MS / 2);
      assert.equal(await b.lookup("lease@lb.test"), "n1", "held within the grace period after the close");
      await sleep(GRACE_MS * 0.7);
      assert.equal(await b.lookup("lease@lb.test"), null, "gone after the grace period");
    });

    it("lets a vanished instance's leases and load counts expire", async () => {
      const b = await t.store();
      const doomed = await startDoomedInstance(backend.url, t.prefix());
      await waitFor("the doomed instance's counts", async () => (await b.loads()).get("n1")?.connections === 2);
      assert.equal(await b.lookup("doomed@lb.test"), "n1");
      await doomed.kill();
      await sleep(GRACE_MS * 1.2);
      assert.equal(await b.lookup("doomed@lb.test"), null, "its lease expired");
      assert.equal((await b.loads()).get("n1"), undefined, "its counts expired");
      assert.deepEqual(await t.keys(`${t.prefix()}*`), [`${t.prefix()}{loads}:instances`], "only the index of live instances (b) is left");
    });

    it("releases a refused login's claim, and only that", async () => {
      const a = await t.store();
      const b = await t.store();
      await a.claim("refused@lb.test", "n1", []);
      await a.release("refused@lb.test", "n1");
      assert.equal(await b.lookup("refused@lb.test"), null);

      await a.claim("resuming@lb.test", "n1", []);
      await a.redirected("resuming@lb.test", "n1");
      await a.release("resuming@lb.test", "n1");
      assert.equal(await b.lookup("resuming@lb.test"), "n1", "a confirmed entry stays (a wrong password cannot unpin a user)");

      await b.claim("elsewhere@lb.test", "n2", []);
      await a.release("elsewhere@lb.test", "n2");
      assert.equal(await b.lookup("elsewhere@lb.test"), "n2", "another instance's claim stays");

      await a.claim("open@lb.test", "n1", []);
      await a.connectionOpened("open@lb.test", "n1");
      await a.release("open@lb.test", "n1");
      assert.equal(await b.lookup("open@lb.test"), "n1", "an open connection holds it");
    });

    it("leaves no key behind after 1,000 made-up JIDs are claimed and released", async () => {
      // What is left behind is the point here, not how fast: 250 calls at once may queue past the usual deadline.
      const a = await t.store({ timeoutMs: 5000 });
      const jids = Array.from({ length: 1000 }, (_, i) => `nobody${i}@lb.test`);
      for (let i = 0; i < jids.length; i += 250) {
        await Promise.all(
          jids.slice(i, i + 250).map(async (jid) => {
            await a.claim(jid, "n1", []);
            await a.release(jid, "n1");
          }),
        );
      }
      assert.deepEqual(await t.keys(`${t.prefix()}jid:*`), []);
    });

    it("keeps hash tags out of account names: a JID with { and } cannot choose its Cluster slot", async () => {
      const a = await t.store();
      const b = await t.store();
      // Distinct JIDs, some of them what another one's escape would look like.
      const jids = ["{nodes}x@lb.test", "a}b{c}@lb.test", "%7Bnodes%7Dx@lb.test", "{}{loads}@lb.test", "%@lb.test", "%25@lb.test"];
      for (const [i, jid] of jids.entries()) assert.deepEqual(await a.claim(jid, `n${i}`, []), { owner: `n${i}`, wrote: true }, jid);
      for (const [i, jid] of jids.entries()) assert.equal(await b.lookup(jid), `n${i}`, `${jid} is found again, under its own key`);
      const keys = await t.keys(`${t.prefix()}jid:*`);
      assert.equal(keys.length, jids.length);
      assert.equal(hashTag(`${t.prefix()}{nodes}:index`), "nodes"); // the control keys do have their tag
      for (const key of keys) assert.equal(hashTag(key), null, `${key}: hashed whole, no tag of the client's`);
      assert.ok(keys.includes(`${t.prefix()}jid:%7Bnodes%7Dx@lb.test`), `readable escapes: ${keys.join(" ")}`);
    });

    it("tells every instance which node issued a JID's FAST token, until the token expires; the latest token wins", async () => {
      const a = await t.store();
      const b = await t.store();
      await a.tokenIssued("fast@lb.test", "n1", Date.now() + 60_000);
      assert.equal(await b.tokenNode("fast@lb.test"), "n1");
      await b.tokenIssued("fast@lb.test", "n2", Date.now() + 60_000);
      assert.equal(await a.tokenNode("fast@lb.test"), "n2");
      await a.tokenIssued("brief@lb.test", "n1", Date.now() + 300);
      assert.equal(await b.tokenNode("brief@lb.test"), "n1");
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(await b.tokenNode("brief@lb.test"), null, "gone with the token");
      assert.deepEqual(await t.keys(`${t.prefix()}fast:brief*`), [], "and so is its key");
      await a.tokenIssued("{nodes}@lb.test", "n1", Date.now() + 60_000);
      assert.equal(await b.tokenNode("{nodes}@lb.test"), "n1");
      for (const key of await t.keys(`${t.prefix()}fast:*`)) assert.equal(hashTag(key), null, `${key}: no tag of the client's`);
    });

    it("forgets a JID at once when the client closes its stream on the JID's last connection on any instance", async () => {
      const a = await t.store();
      const b = await t.store();
      // The second would have a hash tag of its own but for the escape: its holders hash shares its entry's slot all the same.
      for (const jid of ["bye@lb.test", "tag{x}@lb.test", "odd}one@lb.test"]) {
        await a.claim(jid, "n1", []);
        await a.connectionOpened(jid, "n1");
        await b.connectionOpened(jid, "n1");
        await a.connectionClosed(jid, "n1", true);
        assert.equal(await b.lookup(jid), "n1", `${jid}: still open through the other instance`);
        await b.connectionClosed(jid, "n1", true);
        assert.equal(await a.lookup(jid), null, `${jid}: nothing to resume, so no grace period`);
      }
      assert.deepEqual([...(await t.keys(`${t.prefix()}jid:*`)), ...(await t.keys(`${t.prefix()}holders:*`))], [], "no entry or holders hash left");
    });

    it("keeps the entry through a clean close while a connection that broke, or a redirected client, may come back", async () => {
      const a = await t.store();
      const b = await t.store();
      await a.claim("phone@lb.test", "n1", []);
      await a.connectionOpened("phone@lb.test", "n1");
      await a.connectionOpened("phone@lb.test", "n1");
      await a.connectionClosed("phone@lb.test", "n1", false); // the phone's connection broke
      await sleep(GRACE_MS / 2);
      await a.connectionClosed("phone@lb.test", "n1", true); // the desktop logs out
      assert.equal(await b.lookup("phone@lb.test"), "n1", "the broken connection may resume on n1");
      await sleep(GRACE_MS * 0.7);
      assert.equal(await b.lookup("phone@lb.test"), null, "gone when the broken connection's grace period ends");

      await a.claim("sent@lb.test", "n1", []);
      await a.connectionOpened("sent@lb.test", "n1");
      await b.redirected("sent@lb.test", "n1");
      await a.connectionClosed("sent@lb.test", "n1", true);
      assert.equal(await b.lookup("sent@lb.test"), "n1", "the redirected client logs in at n1 itself");

      // What could resume on a stale node cannot on the node that replaces it.
      await a.claim("moves@lb.test", "n1", []);
      await a.connectionOpened("moves@lb.test", "n1");
      await a.connectionClosed("moves@lb.test", "n1", false); // broke: n1 is stopping
      assert.deepEqual(await b.claim("moves@lb.test", "n2", ["n1"]), { owner: "n2", wrote: true });
      await b.connectionOpened("moves@lb.test", "n2");
      await b.connectionClosed("moves@lb.test", "n2", true);
      assert.equal(await a.lookup("moves@lb.test"), null, "the new node's logout forgets it");

      // An entry without a TTL (pinned by a plugin): the window as before.
      await backend.servers[0]!.cli("-c", "SET", `${t.prefix()}jid:pinned@lb.test`, "n1");
      for (const jid of ["pinned@lb.test"]) {
        await a.claim(jid, "n1", []);
        await a.connectionOpened(jid, "n1");
        await a.connectionClosed(jid, "n1", true);
        assert.equal(await b.lookup(jid), "n1", jid);
      }
      await sleep(GRACE_MS * 1.2);
      assert.equal(await b.lookup("pinned@lb.test"), "n1", "a pin stays a pin");
      assert.deepEqual((await t.keys(`${t.prefix()}holders:*`)).sort(), [], "holders hashes expire with their entries");
    });

    it("sums loads across instances: open connections, and redirects apart from them", async () => {
      const a = await t.store();
      const b = await t.store();
      await b.connectionOpened("y@lb.test", "n1");
      assert.deepEqual((await b.loads()).get("n1"), { connections: 1, redirects: 0 }, "its own counts are fresh at once");
      await b.redirected("z@lb.test", "n2");
      await a.connectionOpened(null, "n1");
      await a.connectionOpened("x@lb.test", "n1");
      await a.redirected("w@lb.test", "n1");
      const expected = loadsOf({ n1: [3, 1], n2: [0, 1] });
      await waitFor("the sums on both instances", async () => sameLoads(await a.loads(), expected) && sameLoads(await b.loads(), expected));
      await b.connectionClosed("y@lb.test", "n1");
      await waitFor("a close seen by the other instance", async () => (await a.loads()).get("n1")?.connections === 2);
    });

    it("counts a JID's redirects once, on the node of its latest, until the grace period ends; withdraws both counts on close", async () => {
      const a = await t.store();
      const b = await t.store();
      for (let i = 0; i < 20; i++) await a.redirected("again@lb.test", "n1");
      await a.redirected(null, "n1");
      await a.redirected("other@lb.test", "n2");
      await a.connectionOpened("real@lb.test", "n2");
      const expected = loadsOf({ n1: [0, 2], n2: [1, 1] });
      assert.ok(sameLoads(await a.loads(), expected), "its own counts: the same JID again and again is one user");
      await waitFor("the counts seen by the other instance", async () => sameLoads(await b.loads(), expected));
      await a.redirected("again@lb.test", "n2");
      await waitFor("the JID's move seen by the other instance", async () => sameLoads(await b.loads(), loadsOf({ n1: [0, 1], n2: [1, 2] })));
      await waitFor("the redirects expired", async () => sameLoads(await b.loads(), loadsOf({ n2: [1, 0] })), GRACE_MS * 3);
      await a.redirected("late@lb.test", "n1");
      await waitFor("a late redirect seen", async () => (await b.loads()).get("n1")?.redirects === 1);
      await a.close();
      await waitFor("the closed instance's counts withdrawn", async () => (await b.loads()).size === 0);
      assert.deepEqual(await t.keys(`${t.prefix()}{loads}:*`), [`${t.prefix()}{loads}:instances`], "no counts of either kind left behind");
    });

    it("announces a registered node to another instance at once, and drops it when its heartbeat stops", async () => {
      const registry = await t.registry();
      const watching = await t.store({ nodeRefreshMs: 60_000 }); // pub/sub only: the safety net is out of the picture
      const seen: string[][] = [];
      watching.watchNodes((nodes) => seen.push(ids(nodes)));
      await waitFor("the initial list", () => seen.length === 1);
      assert.deepEqual(seen[0], []);

      const registered = Date.now();
      assert.equal(await registry.registerNode(spec("n7"), 600), true, "announced");
      await waitFor("the announcement", () => seen.length === 2, 500);
      assert.ok(Date.now() - registered < 500);
      assert.deepEqual(seen[1], ["n7"]);
      const [n7] = await watching.listNodes();
      assert.equal(n7!.source, "registered");
      assert.deepEqual(n7!.external, { host: "n7.example.test", port: 5222 });
      assert.ok(Math.abs(n7!.lastHeartbeat! - Date.now()) < 2000);

      for (let i = 0; i < 5; i++) {
        await sleep(200);
        assert.equal(await registry.registerNode(spec("n7"), 600), false, "a heartbeat of an unchanged node is not announced");
      }
      assert.deepEqual(ids(await watching.listNodes()), ["n7"], "alive past its TTL while heartbeating");
      assert.equal(seen.length, 2);
      assert.equal(await registry.registerNode(spec("n7", 5333), 600), true, "a changed node is announced");
      await waitFor("the change", () => seen.length === 3, 500);

      const safetyNet = await t.store(); // re-reads every 300 ms: sees the expiry without anyone announcing it
      const later: string[][] = [];
      safetyNet.watchNodes((nodes) => later.push(ids(nodes)));
      await waitFor("the node's expiry", () => later.at(-1)?.length === 0, 2000);
      await waitFor("the expiry announced to the pub/sub-only watcher", () => seen.at(-1)?.length === 0, 1000);
    });

    it("drains and undrains nodes, static ones too, on every instance", async () => {
      const registry = await t.registry();
      const a = await t.store({ staticNodes: [spec("s1")] });
      const b = await t.store({ staticNodes: [spec("s1")] });
      const seen: StoredNode[][] = [];
      b.watchNodes((nodes) => seen.push(nodes));
      await registry.registerNode(spec("n7"), 10_000);
      await a.drain("s1");
      await registry.drain("n7");
      const draining = (nodes: readonly StoredNode[]): string[] => ids(nodes.filter((n) => n.draining));
      await waitFor("both drains seen by the watcher", () => seen.length > 0 && draining(seen.at(-1)!).length === 2);
      assert.deepEqual(draining(await b.listNodes()), ["s1", "n7"]);
      assert.deepEqual((await b.listNodes()).map((n) => n.source), ["static", "registered"]);

      await b.undrain("s1");
      assert.deepEqual(draining(await a.listNodes()), ["n7"]);
      assert.equal(await registry.removeNode("n7"), true);
      assert.deepEqual(await registry.listDrained(), [], "remove forgets the drain flag");
      assert.deepEqual(ids(await a.listNodes()), ["s1"]);
      await waitFor("the removal seen by the watcher", () => ids(seen.at(-1)!).join() === "s1");
    });
  });
}

describe("RedisStore when Redis fails", () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedis();
  });
  after(() => server.stop());
  const t = fixture(() => ({ url: server.url, servers: [server], stop: async () => {} }));

  /** Rejects with XMPP_LB_STORE_UNAVAILABLE within about timeoutMs. */
  async function assertUnavailable(call: () => Promise<unknown>): Promise<void> {
    const started = performance.now();
    await assert.rejects(call, (err: unknown) => err instanceof StoreError && err.code === "XMPP_LB_STORE_UNAVAILABLE");
    const took = performance.now() - started;
    assert.ok(took < TIMEOUT_MS + 150, `rejected after ${Math.round(took)} ms`);
  }

  it("fails fast while Redis is stopped, says so once, and recovers by itself", async () => {
    const observed: string[] = [];
    const a = await t.store({ observe: (op, seconds, ok) => observed.push(`${op} ${ok} ${seconds < 1}`) });
    await a.lookup("warm@lb.test");
    assert.ok(observed.includes("lookup true true"), observed.join());
    const statuses: boolean[] = [];
    a.onStatus((up) => statuses.push(up));

    await server.kill("SIGSTOP");
    try {
      await assertUnavailable(() => a.claim("stopped@lb.test", "n1", []));
      await assertUnavailable(() => a.lookup("stopped@lb.test"));
      assert.equal(a.up, false);
      await assertUnavailable(() => a.loads());
      await assertUnavailable(() => a.listNodes());
      await sleep(500); // background rounds keep failing
      assert.deepEqual(statuses, [false], "one transition");
    } finally {
      await server.kill("SIGCONT");
    }
    await waitFor("up again", () => a.up);
    assert.deepEqual(statuses, [false, true]);
    assert.equal((await a.claim("after-stop@lb.test", "n1", [])).owner, "n1");
    assert.ok(observed.includes("claim false true") && observed.includes("claim true true"), "the metrics hook hears failures and successes");
  });

  it("comes back after Redis is killed and restarted on the same port, writing open leases again", async () => {
    const a = await t.store();
    await a.claim("kept@lb.test", "n2", []);
    await a.connectionOpened("kept@lb.test", "n2");
    const statuses: boolean[] = [];
    a.onStatus((up) => statuses.push(up));

    await server.kill("SIGKILL");
    await waitFor("down", () => !a.up);
    await assertUnavailable(() => a.claim("killed@lb.test", "n1", []));
    await server.restart(); // empty: no persistence
    await waitFor("up again", () => a.up, 5000);
    assert.deepEqual(statuses, [false, true]);
    assert.equal((await a.claim("after-restart@lb.test", "n1", [])).owner, "n1");
    await waitFor("the open connection's lease written again", async () => (await a.lookup("kept@lb.test")) === "n2", GRACE_MS);
  });

  it("rejects quickly when Redis was never there, and closes without waiting for it", async () => {
    await server.kill("SIGTERM");
    try {
      const a = await t.store({}, false);
      await assertUnavailable(() => a.lookup("nobody@lb.test"));
      assert.equal(a.up, false);
      await assert.rejects(() => a.waitUntilUp(100), StoreError);
      const closing = performance.now();
      await a.close();
      assert.ok(performance.now() - closing < TIMEOUT_MS + 150);
      await assert.rejects(() => a.lookup("nobody@lb.test"), StoreError);
    } finally {
      await server.restart();
    }
  });
});

describe("parseRedisUrl", () => {
  it("reads standalone, TLS, Sentinel and Cluster URLs", () => {
    assert.deepEqual(parseRedisUrl("redis://:s3cr%40t@redis.internal:6380/2"), { kind: "standalone", server: { host: "redis.internal", port: 6380 }, tls: false, db: 2, password: "s3cr@t" });
    assert.deepEqual(parseRedisUrl("rediss://lb:pw@[::1]"), { kind: "standalone", server: { host: "::1", port: 6379 }, tls: true, db: 0, username: "lb", password: "pw" });
    assert.deepEqual(parseRedisUrl("redis-sentinel://:pw@s1:26380,s2/mymaster/1"), {
      kind: "sentinel",
      sentinels: [
        { host: "s1", port: 26380 },
        { host: "s2", port: 26379 },
      ],
      masterName: "mymaster",
      db: 1,
      password: "pw",
    });
    assert.deepEqual(parseRedisUrl("redis-cluster://c1:7000,c2:7001"), {
      kind: "cluster",
      nodes: [
        { host: "c1", port: 7000 },
        { host: "c2", port: 7001 },
      ],
    });
  });

  it("refuses a bad URL with one sentence and never shows the password", () => {
    for (const url of [
      "http://localhost:6379",
      "redis://",
      "redis://:hunter2@host:99999",
      "redis://host:6379/zero",
      "redis://a:1,b:2",
      "redis-sentinel://s1:26379",
      "redis-cluster://c1:7000/1",
      "localhost:6379",
    ]) {
      assert.throws(
        () => parseRedisUrl(url),
        (err: unknown) => err instanceof ConfigError && err.code === "XMPP_LB_CONFIG" && !err.message.includes("hunter2") && !err.message.includes("\n"),
        url,
      );
    }
    assert.throws(() => new RedisStore("redis:/oops", { affinityTtlMs: 1000 }), ConfigError);
  });
});

/** Loads from node id: [connections, redirects]. */
function loadsOf(counts: Record<string, [number, number]>): Map<string, NodeLoad> {
  return new Map(Object.entries(counts).map(([node, [connections, redirects]]) => [node, { connections, redirects }]));
}

function sameLoads(actual: ReadonlyMap<string, NodeLoad>, expected: ReadonlyMap<string, NodeLoad>): boolean {
  return actual.size === expected.size && [...expected].every(([node, n]) => actual.get(node)?.connections === n.connections && actual.get(node)?.redirects === n.redirects);
}
