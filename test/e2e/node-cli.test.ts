import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { runCli, type CliRun } from "../support/cli.js";
import { freePort, sleep, waitFor } from "../support/wait.js";
import { RedisRegistry } from "../../src/store/redis-registry.js";
import { startProsodyCluster, type ProsodyCluster, type ProsodyNode } from "../support/prosody.js";
import { startRedis, type RedisServer } from "../support/redis.js";

/** Heartbeats every 500 ms; a node is gone 1.5 s after its last one. */
const TTL_SECONDS = 1.5;

const hostPort = (a: { host: string; port: number }): string => `${a.host}:${a.port}`;

describe("xmpp-lb node ...", () => {
  let redis: RedisServer;
  let cluster: ProsodyCluster;
  let node: ProsodyNode;
  let registry: RedisRegistry;
  const children: ChildProcess[] = [];

  const store = (): string[] => ["--store", redis.url];
  const WS_URL = "wss://chat.lb.test/xmpp-websocket";
  const WS_INTERNAL_URL = "ws://127.0.9.7:5280/xmpp-websocket";
  const registered = async (id: string): Promise<boolean> => (await registry.listNodes()).some((n) => n.id === id);
  const sidecar = (): CliRun => {
    const r = runCli(["node", "register", ...store(), "--id", node.id, "--internal", hostPort(node.internal), "--external", hostPort(node.external), "--domains", cluster.domain, "--zone", "z1", "--ws", WS_URL, "--ws-internal", WS_INTERNAL_URL, "--ttl", String(TTL_SECONDS), "--probe-timeout", "1"]);
    children.push(r.child);
    return r;
  };
  const cli = async (...args: string[]): Promise<string> => {
    const { code, stdout, stderr } = await runCli(["node", ...args, ...store()]).done;
    assert.equal(code, 0, stderr);
    return stdout;
  };

  before(async () => {
    [redis, cluster] = await Promise.all([startRedis(), startProsodyCluster({ count: 1, externalPort: 0 })]);
    node = cluster.nodes[0]!;
    registry = new RedisRegistry(redis.url);
    await registry.waitUntilUp(5000);
  });
  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await registry.close();
    await Promise.all([cluster.stop(), redis.stop()]);
  });

  it("register: the node appears; node list shows it up with its addresses and cluster-wide sessions", async () => {
    // Two balancer instances' published loads (the {loads} schema): node list sums them.
    const future = String(Date.now() + 60_000);
    await redis.cli("ZADD", "xmpp-lb:{loads}:instances", future, "lb-a", future, "lb-b");
    await redis.cli("HSET", "xmpp-lb:{loads}:instance:lb-a", node.id, "2");
    await redis.cli("HSET", "xmpp-lb:{loads}:instance:lb-b", node.id, "3");

    const r = sidecar();
    await waitFor("the node registered", () => registered(node.id));
    const [stored] = await registry.listNodes();
    assert.deepEqual(stored!.internal, node.internal);
    assert.deepEqual(stored!.external, node.external);
    assert.equal(stored!.zone, "z1");
    // A registered node carries its WebSocket URLs, so WebSocket clients can be redirected and forwarded to it.
    assert.equal(stored!.ws, WS_URL);
    assert.equal(stored!.wsInternal, WS_INTERNAL_URL);

    const table = await cli("list");
    assert.match(table, /^id\s+internal\s+external\s+state\s+zone\s+weight\s+sessions\s+last heartbeat$/m);
    const row = new RegExp(`^${node.id}\\s+${hostPort(node.internal)}\\s+${hostPort(node.external)}\\s+up\\s+z1\\s+1\\s+5\\s+\\ds ago$`, "m");
    assert.match(table, row);

    const [entry, ...others] = JSON.parse(await cli("list", "--json")) as Array<Record<string, unknown>>;
    assert.equal(others.length, 0);
    assert.equal(entry!.id, node.id);
    assert.equal(entry!.state, "up");
    assert.equal(entry!.source, "registered");
    assert.equal(entry!.internal, hostPort(node.internal));
    assert.equal(entry!.sessions, 5);
    assert.equal(typeof entry!.lastHeartbeat, "number");
    assert.match(r.stdout(), /"msg":"probe ok: heartbeating"/);
    await redis.cli("DEL", "xmpp-lb:{loads}:instances", "xmpp-lb:{loads}:instance:lb-a", "xmpp-lb:{loads}:instance:lb-b");

    // SIGKILL: no deregistration, the node goes when its TTL runs out.
    r.child.kill("SIGKILL");
    const killedAt = Date.now();
    assert.ok(await registered(node.id), "still there right after the kill");
    await waitFor("the node expired", async () => !(await registered(node.id)), 4000);
    assert.ok(Date.now() - killedAt >= 800, `gone after ${Date.now() - killedAt} ms, before its TTL`);
  });

  it("SIGTERM deregisters at once and exits 0", async () => {
    const r = sidecar();
    await waitFor("the node registered", () => registered(node.id));
    r.child.kill("SIGTERM");
    const { code, stdout } = await r.done;
    assert.equal(code, 0);
    assert.equal(await registered(node.id), false);
    assert.match(stdout, /"msg":"deregistered/);
  });

  it("stops heartbeating while the XMPP probe fails, and comes back with the node", async () => {
    const r = sidecar();
    await waitFor("the node registered", () => registered(node.id));
    await node.stop();
    await waitFor("the node gone after its TTL", async () => !(await registered(node.id)), 5000);
    assert.equal((r.stdout().match(/"msg":"probe failing/g) ?? []).length, 1, "one line per transition");
    await node.start();
    await waitFor("the node back", () => registered(node.id), 5000);
    assert.match(r.stdout(), /"msg":"probe ok again/);
    r.child.kill("SIGTERM");
    assert.equal((await r.done).code, 0);
  });

  it("drain, undrain and remove, for registered and static nodes", async () => {
    await registry.registerNode({ id: "r1", internal: { host: "10.0.0.1", port: 5222 }, external: { host: "10.0.0.1", port: 5222 }, weight: 2, domains: [] }, 60_000);
    const state = async (id: string): Promise<boolean | undefined> => (await registry.listNodes()).find((n) => n.id === id)?.draining;

    assert.match(await cli("drain", "r1"), /^r1 drained/);
    assert.equal(await state("r1"), true);
    assert.match(await cli("list"), /^r1\s+10\.0\.0\.1:5222\s+10\.0\.0\.1:5222\s+draining\s+-\s+2\s+0\s+\ds ago$/m);
    assert.match(await cli("drain", "r1"), /already drained: nothing changed/);
    assert.match(await cli("undrain", "r1"), /^r1 undrained/);
    assert.equal(await state("r1"), false);
    assert.match(await cli("undrain", "r1"), /was not drained: nothing changed/);

    assert.match(await cli("drain", "s1"), /^s1 drained/);
    assert.match(await cli("list"), /^s1\s+-\s+-\s+draining\s+-\s+-\s+0\s+static$/m);
    assert.deepEqual(await registry.listDrained(), ["s1"]);

    assert.match(await cli("remove", "r1"), /^r1 removed/);
    assert.match(await cli("remove", "s1"), /^s1 removed/);
    assert.deepEqual(await registry.listNodes(), []);
    assert.deepEqual(await registry.listDrained(), []);
    assert.match(await cli("remove", "s1"), /nothing changed/);
    assert.match(await cli("list"), /no node is registered or drained/);
  });

  it("exits 2 for bad flags and 1 when Redis is unreachable, with one line", async () => {
    const internal = hostPort(node.internal);
    const cases: Array<[string[], number, RegExp]> = [
      [["node", "register", ...store(), "--id", "x", "--internal", "nowhere", "--domains", "lb.test"], 2, /'nowhere' is not HOST:PORT/],
      [["node", "register", ...store(), "--id", "x", "--internal", internal], 2, /--probe-domain/],
      [["node", "register", "--store", "memory", "--id", "x", "--internal", internal, "--domains", "lb.test"], 2, /--store memory/],
      [["node", "list", "--store", "memory"], 2, /--store memory/],
      [["node", "list", "--store", `redis://127.0.0.1:${await freePort()}`], 1, /Redis did not answer/],
    ];
    await Promise.all(
      cases.map(async ([args, expected, message]) => {
        const { code, stderr } = await runCli(args).done;
        assert.equal(code, expected, `${args.join(" ")}: ${stderr}`);
        assert.match(stderr, message);
        assert.equal(stderr.split("\n")[0]!.startsWith("xmpp-lb: "), true, stderr);
        assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
      }),
    );
  });
});
