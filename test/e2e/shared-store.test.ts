import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { hashStrategy } from "../../src/router/strategies.js";
import { RedisRegistry } from "../../src/store/redis-registry.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { RawXmpp, plainAuth } from "../support/raw.js";
import { sleep, waitFor } from "../support/wait.js";
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from "../support/redis.js";

const PASSWORD = "correct horse";
/** Several balancer instances on one real Redis, in front of real Prosody nodes. */
describe("shared Redis store", () => {
  let cluster: ProsodyCluster;
  let redis: RedisServer;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const users = Array.from({ length: 40 }, (_, i) => `member${String(i).padStart(2, "0")}`);

  const balancer = async (extra: Parameters<typeof startBalancer>[0] = {}): Promise<TestBalancer> => {
    const lb = await startBalancer({ mode: "forward", store: redis.url, node: nodeFlags(cluster.nodes), ...extra });
    balancers.push(lb);
    return lb;
  };
  const connect = async (lb: TestBalancer, username: string, resource?: string): Promise<Client> => {
    const c = await login({ port: lb.port, username, password: PASSWORD, resource });
    clients.push(c);
    return c;
  };
  const closeAll = async (): Promise<void> => {
    await stopAll(clients.splice(0));
    await Promise.all(balancers.splice(0).map((b) => b.close()));
  };

  before(async () => {
    redis = await startRedis();
    cluster = await startProsodyCluster({ count: 3, externalPort: 0, users: ["alice", "bob", ...users].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await closeAll();
    await cluster?.stop();
    await redis?.stop();
  });

  it("puts two resources of one account, logging in at the same moment through two instances, on one node", async () => {
    const [a, b] = [await balancer(), await balancer()];
    for (const user of users.slice(0, 6)) {
      const [phone, laptop] = await Promise.all([connect(a, user, "phone"), connect(b, user, "laptop")]);
      assert.equal(await nodeOf(phone), await nodeOf(laptop), `${user}'s resources were split`);
    }
    await closeAll();
  });

  it("balances 40 accounts with least-conn, counting the sessions of both instances", async () => {
    const [a, b] = [await balancer(), await balancer()];
    const placed = new Map<string, number>();
    for (let batch = 0; batch < 4; batch++) {
      const lb = batch % 2 === 0 ? a : b;
      for (const user of users.slice(batch * 10, batch * 10 + 10)) {
        const node = await nodeOf(await connect(lb, user));
        placed.set(node, (placed.get(node) ?? 0) + 1);
      }
      await sleep(1300); // each instance publishes its counts every second
    }
    const counts = [...placed.values()];
    assert.equal(counts.length, 3, `every node got users: ${JSON.stringify([...placed])}`);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 2, `uneven: ${JSON.stringify([...placed])}`);
    await closeAll();
  });

  it("sends users to a node registered at runtime, none after its heartbeat stops, none while drained", async () => {
    const [first, second, third] = cluster.nodes;
    const registry = new RedisRegistry(redis.url);
    await registry.waitUntilUp(3000);
    // Static: n1 only; n2 and n3 join at runtime, as a sidecar would register them.
    const lb = await balancer({ node: nodeFlags([first!]), strategy: "hash" });
    const spec = (n: typeof second) => ({ id: n!.id, internal: n!.internal, external: n!.external, weight: 1, domains: [] });
    const heartbeat = (n: typeof second) => registry.registerNode(spec(n), 1500);
    await Promise.all([heartbeat(second), heartbeat(third)]);
    const beating = setInterval(() => void heartbeat(second).catch(() => {}), 400);
    // n3 beats until users have reached it (logins take their own time), then stops.
    const beatingThird = setInterval(() => void heartbeat(third).catch(() => {}), 400);
    try {
      await waitFor("both registered nodes are known", () => lb.balancer.nodes.table.get("n2") !== undefined && lb.balancer.nodes.table.get("n3") !== undefined, 3000);
      const seen = new Set<string>();
      for (const user of users.slice(0, 12)) seen.add(await nodeOf(await connect(lb, user)));
      assert.deepEqual([...seen].sort(), ["n1", "n2", "n3"], "registered nodes receive users");

      // n3's heartbeat stops: gone after its TTL (1.5 s) and one re-read.
      clearInterval(beatingThird);
      await waitFor("n3 is gone", () => lb.balancer.nodes.table.get("n3") === undefined, 4000);
      for (const user of users.slice(12, 24)) assert.notEqual(await nodeOf(await connect(lb, user)), "n3");

      await registry.drain("n2");
      await waitFor("n2 is drained", () => lb.balancer.nodes.table.get("n2")?.state === "draining", 3000);
      for (const user of users.slice(24, 34)) assert.equal(await nodeOf(await connect(lb, user)), "n1", "a drained node takes no new users");
      const stillThere = await Promise.all(clients.slice(0, 12).map((c) => nodeOf(c)));
      assert.ok(stillThere.includes("n2"), "sessions on the drained node continue");
      await registry.undrain("n2");
      await waitFor("n2 is undrained", () => lb.balancer.nodes.table.get("n2")?.state === "up", 3000);
    } finally {
      clearInterval(beating);
      clearInterval(beatingThird);
      await registry.removeNode("n2");
      await registry.removeNode("n3");
      await registry.close();
      await closeAll();
    }
  });

  it("keeps no directory entry for 1,000 logins the nodes refuse", async () => {
    const lb = await balancer({ saslMechanisms: ["PLAIN"] });
    const made = Array.from({ length: 1000 }, (_, i) => `ghost${i}`);
    for (let i = 0; i < made.length; i += 50) {
      await Promise.all(
        made.slice(i, i + 50).map(async (user) => {
          const c = await RawXmpp.connect(lb.port);
          await c.secureStream();
          c.send(plainAuth(user, "wrong"));
          await c.until(/<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>/, 10_000);
          c.destroy();
        }),
      );
    }
    await sleep(200);
    const keys = (await redis.cli("--scan", "--pattern", "xmpp-lb:jid:ghost*")).trim();
    assert.equal(keys, "", "refused logins left directory entries");
    await closeAll();
  });

  it("routes by hash while Redis is frozen or dead, and uses the directory again once it is back", async () => {
    const lb = await balancer({ storeTimeout: 0.25 });
    const table = () => lb.balancer.nodes.table;
    const expected = (user: string): string => hashStrategy.pick(table().available("lb.test"), `${user}@lb.test`, new Map()).id;
    const storeUp = async (): Promise<string | undefined> => /^xmpp_lb_store_up (\d)/m.exec(await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_store_up"))?.[1];

    await redis.kill("SIGSTOP");
    try {
      for (const user of users.slice(0, 4)) {
        const started = Date.now();
        const c = await connect(lb, user);
        assert.equal(await nodeOf(c), expected(user), "a login during the outage lands where the hash says");
        assert.ok(Date.now() - started < 4000, "the outage does not hold a login");
      }
      await waitFor("store_up is 0", async () => (await storeUp()) === "0", 5000);
    } finally {
      await redis.kill("SIGCONT");
    }
    await waitFor("the store is up again", () => lb.balancer.store.up, 5000);
    await connect(lb, "alice");
    assert.notEqual(await lb.balancer.store.lookup("alice@lb.test"), null, "the directory is used again");
    assert.equal(await storeUp(), "1");

    await redis.kill("SIGKILL");
    for (const user of users.slice(4, 8)) assert.equal(await nodeOf(await connect(lb, user)), expected(user));
    await redis.restart();
    await waitFor("the store is up after a restart", () => lb.balancer.store.up, 8000);
    await connect(lb, "bob");
    assert.notEqual(await lb.balancer.store.lookup("bob@lb.test"), null);
    await closeAll();
  });
});

describe("Redis Cluster store", () => {
  let cluster: ProsodyCluster;
  let redis: RedisCluster;
  const clients: Client[] = [];
  const balancers: TestBalancer[] = [];

  before(async () => {
    redis = await startRedisCluster();
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, users: ["carol", "dave", "erin"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
    await redis?.stop();
  });

  it("keeps affinity across two instances on a three-master cluster", async () => {
    for (let i = 0; i < 2; i++) balancers.push(await startBalancer({ mode: "forward", store: redis.url, node: nodeFlags(cluster.nodes) }));
    for (const user of ["carol", "dave", "erin"]) {
      const [a, b] = await Promise.all(balancers.map((lb, i) => login({ port: lb.port, username: user, password: PASSWORD, resource: `r${i}` })));
      clients.push(a!, b!);
      const node = await nodeOf(a!);
      assert.equal(await nodeOf(b!), node);
      assert.equal(await balancers[0]!.balancer.store.lookup(`${user}@lb.test`), node);
    }
  });
});
