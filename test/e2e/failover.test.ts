import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";

const PASSWORD = "correct horse";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const disconnected = (c: Client): Promise<void> => new Promise((resolve) => c.once("disconnect" as never, () => resolve()));

/** Nodes that die and come back while clients log in: no login is refused that a node could take. */
describe("failover", () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  const clients: Client[] = [];
  const users = Array.from({ length: 8 }, (_, i) => `fo${i}`);

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, users: [...users, "late"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    await lb?.close();
    await cluster?.stop();
  });

  it("waits for a node that restarts instead of refusing the login (SIGKILL and SIGTERM)", async () => {
    const [only] = cluster.nodes;
    lb = await startBalancer({ node: nodeFlags([only!]) });
    const first = await login({ port: lb.port, username: "fo0", password: PASSWORD });
    for (const signal of ["SIGKILL", "SIGTERM"] as const) {
      await only!.kill(signal);
      const back = only!.start(); // Prosody takes about a second to listen again
      const again = await login({ port: lb.port, username: "fo0", password: PASSWORD });
      clients.push(again);
      assert.equal(await nodeOf(again), "n1");
      await back;
    }
    await first.stop().catch(() => {});
    await lb.close();
  });

  it("drops a dead node's sessions at once, binds their reconnects on a healthy node at the first try, and uses the node again once back", async () => {
    lb = await startBalancer({ node: nodeFlags(cluster.nodes) });
    // One at a time: @xmpp/client's SCRAM runs PBKDF2 in small async steps, and eight at once on two cores outlast its 2 s stream timeout.
    const placed: Array<{ user: string; client: Client }> = [];
    for (const user of users) placed.push({ user, client: await login({ port: lb.port, username: user, password: PASSWORD }) });
    const where = await Promise.all(placed.map(async (p) => ({ ...p, node: await nodeOf(p.client) })));
    const victimId = where[0]!.node;
    const victim = cluster.nodes.find((n) => n.id === victimId)!;
    const onVictim = where.filter((w) => w.node === victimId);
    clients.push(...where.filter((w) => w.node !== victimId).map((w) => w.client));

    const gone = Promise.all(onVictim.map((w) => disconnected(w.client)));
    await victim.kill("SIGKILL");
    await Promise.race([gone, sleep(3000).then(() => assert.fail("the dead node's clients were not disconnected at once"))]);

    for (const { user } of onVictim) {
      const again = await login({ port: lb.port, username: user, password: PASSWORD });
      clients.push(again);
      assert.notEqual(await nodeOf(again), victimId);
    }

    await victim.start();
    await sleep(2500); // a down node is probed again after 1 s, then 2 s
    assert.equal(lb.balancer.nodes.table.get(victimId)?.state, "up");
    // With least-conn the returning node, holding nobody now, takes the next new user.
    const late = await login({ port: lb.port, username: "late", password: PASSWORD });
    clients.push(late);
    assert.equal(await nodeOf(late), victimId);
  });
});
