import assert from "node:assert/strict";
import { linkSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { resolveConfig } from "../../src/config.js";
import type { MemberNode } from "../../src/cluster/node.js";
import { DnsSource, type DnsResolver } from "../../src/control/discovery/dns-source.js";
import { parseDiscoverUrl, type DnsDiscovery } from "../../src/control/discovery/discovery-url.js";
import { createLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import { ConfigError } from "../../src/errors.js";
import { hashStrategy } from "../../src/router/strategies.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { listeningPort, runCli } from "../support/cli.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startDnsmasq, type Dnsmasq, type SrvEntry } from "../support/dnsmasq.js";
import { startProsodyCluster, type ProsodyCluster, type ProsodyNode } from "../support/prosody.js";
import { freePort, sleep, waitFor } from "../support/wait.js";

const PASSWORD = "correct horse";
const NAME = "xmpp-nodes.disco.test";
const SRV = "_xmpp-client._tcp.disco.test";
const users = Array.from({ length: 24 }, (_, i) => `finder${String(i).padStart(2, "0")}`);

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * One port free on every node's addresses. `dns://NAME:PORT` puts every
 * A record on one port, so the nodes share their external port (Prosody
 * binds it on the internal address too), instead of a free port each.
 */
async function sharedPort(count: number): Promise<number> {
  for (;;) {
    const port = await freePort("127.0.2.1");
    let ok = true;
    for (let i = 1; i <= count && ok; i++) ok = (await bindable(`127.0.1.${i}`, port)) && (await bindable(`127.0.2.${i}`, port));
    if (ok) return port;
  }
}

describe("discovery (--discover)", () => {
  let cluster: ProsodyCluster;
  let dnsmasq: Dnsmasq;
  let port: number;
  let dir: string;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  let next = 0;
  const nextUser = (): string => users[next++ % users.length]!;

  const connect = async (lb: TestBalancer, username = nextUser()): Promise<Client> => {
    const c = await login({ port: lb.port, username, password: PASSWORD });
    clients.push(c);
    return c;
  };
  const closeAll = async (): Promise<void> => {
    await stopAll(clients.splice(0));
    await Promise.all(balancers.splice(0).map((b) => b.close()));
  };
  const ids = (lb: TestBalancer): string[] => lb.balancer.nodes.table.nodes.map((n) => n.id).sort();
  const gauge = async (lb: TestBalancer, name: string, source: string): Promise<number | undefined> => {
    const text = await lb.balancer.metrics.registry.getSingleMetricAsString(name);
    const line = text.split("\n").find((l) => l.startsWith(`${name}{source="${source}"}`));
    return line === undefined ? undefined : Number(line.split(" ").at(-1));
  };
  const node = (i: number): ProsodyNode => cluster.nodes[i - 1]!;
  const hostsFor = (...nums: number[]): Array<[string, string]> => [
    ...nums.map((i): [string, string] => [`127.0.1.${i}`, NAME]),
    ...[1, 2, 3, 4].map((i): [string, string] => [`127.0.1.${i}`, `n${i}.disco.test`]),
  ];

  before(async () => {
    port = await sharedPort(4);
    dir = mkdtempSync(path.join(os.tmpdir(), "xmpp-lb-discovery-"));
    dnsmasq = await startDnsmasq({ hosts: hostsFor(1, 2) });
    cluster = await startProsodyCluster({ count: 4, externalPort: port, users: users.map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await closeAll();
    await cluster?.stop();
    await dnsmasq?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("follows A records: a node added receives users within one interval, one removed none, its sessions continue", async () => {
    await dnsmasq.setHosts(hostsFor(1, 2));
    const source = `dns://${NAME}:${port}`;
    const lb = await startBalancer({ discover: source, dnsServer: dnsmasq.server });
    balancers.push(lb);
    const [a, b, c] = [`127.0.1.1:${port}`, `127.0.1.2:${port}`, `127.0.1.3:${port}`];
    assert.deepEqual(ids(lb), [a, b], "the nodes of the first answer are there at start");
    const first = lb.balancer.nodes.table.get(a)!;
    assert.deepEqual([first.internal, first.external, first.source, first.weight], [{ host: "127.0.1.1", port }, { host: "127.0.1.1", port }, "dns", 1]);
    assert.equal(await gauge(lb, "xmpp_lb_discovery_up", source), 1);
    assert.equal(await gauge(lb, "xmpp_lb_discovery_nodes", source), 2);

    const early = [await connect(lb), await connect(lb), await connect(lb), await connect(lb)];
    const placed = await Promise.all(early.map((x) => nodeOf(x)));
    assert.deepEqual([...new Set(placed)].sort(), ["n1", "n2"], `least-conn spreads over the two nodes: ${placed}`);

    await dnsmasq.setHosts(hostsFor(1, 2, 3));
    const added = Date.now();
    await waitFor("the third node joins", () => ids(lb).includes(c), 2500);
    assert.ok(Date.now() - added <= 2500, "within one interval (TTL 1 s, min interval 1 s) and the answer's way");
    // least-conn: the new node has no sessions, so it takes the next user.
    assert.equal(await nodeOf(await connect(lb)), "n3", "the new node receives users");

    const onN2 = early[placed.indexOf("n2")]!;
    await dnsmasq.setHosts(hostsFor(1, 3));
    await waitFor("the removed node leaves", () => !ids(lb).includes(b), 2500);
    assert.deepEqual(ids(lb), [a, c]);
    for (let i = 0; i < 5; i++) assert.notEqual(await nodeOf(await connect(lb)), "n2", "a node that left DNS gets no new users");
    assert.equal(await nodeOf(onN2), "n2", "a session on the removed node continues");
    await closeAll();
  });

  it("takes SRV records: targets, ports and weights; the next priority only when the lowest is gone or down", async () => {
    const srv = (i: number, priority: number, weight: number): SrvEntry => ({ service: SRV, target: `n${i}.disco.test`, port: node(i).internal.port, priority, weight });
    await dnsmasq.setSrv([srv(1, 10, 1), srv(2, 10, 3), srv(4, 10, 0), srv(3, 20, 1)]);
    const source = `dns+srv://${SRV}?external=%s.example.test:5222`;
    const logLines: string[] = [];
    const lb = await startBalancer({ discover: source, dnsServer: dnsmasq.server, strategy: "hash" }, logLines);
    balancers.push(lb);
    const id = (i: number): string => `n${i}.disco.test:${node(i).internal.port}`;
    assert.deepEqual(ids(lb), [id(1), id(2), id(4)].sort(), "only the lowest priority");
    const table = lb.balancer.nodes.table;
    const n2 = table.get(id(2))!;
    assert.deepEqual(n2.internal, node(2).internal, "dialed at the target's address, on the record's port");
    assert.deepEqual(n2.external, { host: "n2.example.test", port: 5222 }, "external from the template");
    assert.deepEqual([table.get(id(1))!.weight, n2.weight, table.get(id(4))!.weight], [1, 3, 0.01], "SRV weights; 0 is a very small weight");
    assert.ok(logLines.some((l) => l.includes("SRV weight 0")), "weight 0 is said");

    // The hash spreads by weight: about 1:3 between n1 and n2, next to nothing on n4.
    const share = new Map<string, number>();
    for (let k = 0; k < 4000; k++) {
      const picked = hashStrategy.pick(table.available("lb.test"), `user${k}@lb.test`, new Map()).id;
      share.set(picked, (share.get(picked) ?? 0) + 1);
    }
    const [s1, s2, s4] = [share.get(id(1)) ?? 0, share.get(id(2)) ?? 0, share.get(id(4)) ?? 0];
    assert.ok(s2 / s1 > 2.4 && s2 / s1 < 3.6, `n2:n1 about 3:1 (${s2}:${s1})`);
    assert.ok(s4 < 40, `n4 gets very few (${s4} of 4000)`);
    for (let i = 0; i < 6; i++) {
      const user = nextUser();
      const expected = hashStrategy.pick(lb.balancer.nodes.table.available("lb.test"), `${user}@lb.test`, new Map()).id;
      assert.equal(await nodeOf(await connect(lb, user)), expected.split(".")[0], "logins go where the weighted hash says");
    }

    // The lowest priority gone from DNS: the next one is used.
    await dnsmasq.setSrv([srv(3, 20, 1)]);
    await waitFor("priority 20 takes over", () => JSON.stringify(ids(lb)) === JSON.stringify([id(3)]), 4000);
    assert.equal(await nodeOf(await connect(lb)), "n3");
    await dnsmasq.setSrv([srv(1, 10, 1), srv(2, 10, 3), srv(4, 10, 0), srv(3, 20, 1)]);
    await waitFor("priority 10 is back", () => JSON.stringify(ids(lb)) === JSON.stringify([id(1), id(2), id(4)].sort()), 4000);
    await stopAll(clients.splice(0));

    // Every node of the lowest priority down (still in DNS): the next priority takes users until one is up again.
    await Promise.all([node(1).kill(), node(2).kill(), node(4).kill()]);
    try {
      await waitFor("priority 20 joins while priority 10 is down", () => ids(lb).includes(id(3)), 10_000);
      assert.equal(await nodeOf(await connect(lb)), "n3", "the fallback takes users");
      assert.ok(logLines.some((l) => l.includes("no node of the lowest SRV priority is up")));
      await node(1).start();
      await waitFor("priority 20 leaves once a priority 10 node is up", () => !ids(lb).includes(id(3)), 10_000);
    } finally {
      await Promise.all([1, 2, 4].map((i) => (node(i).pid === 0 ? node(i).start() : Promise.resolve())));
    }
    await dnsmasq.setSrv([]);
    await closeAll();
  });

  it("keeps the last known nodes while the resolver is dead: logins go on, discovery_up drops to 0 once", async () => {
    await dnsmasq.setHosts(hostsFor(1, 2));
    const source = `dns://${NAME}:${port}`;
    const logLines: string[] = [];
    const lb = await startBalancer({ discover: source, dnsServer: dnsmasq.server, discoverMaxInterval: 2 }, logLines);
    balancers.push(lb);
    const known = ids(lb);
    assert.equal(known.length, 2);
    const lost = (): number => logLines.filter((l) => l.includes('"discovery source failed')).length;

    await dnsmasq.kill("SIGKILL");
    try {
      await waitFor("discovery_up is 0", async () => (await gauge(lb, "xmpp_lb_discovery_up", source)) === 0, 4000);
      for (let i = 0; i < 4; i++) assert.ok(["n1", "n2"].includes(await nodeOf(await connect(lb))), "logins go on with the last known nodes");
      await sleep(3000); // several failed attempts (1 s, 2 s, 2 s…)
      assert.deepEqual(ids(lb), known, "the last known list stays");
      assert.equal(await gauge(lb, "xmpp_lb_discovery_nodes", source), 2);
      assert.equal(lost(), 1, "one warning for the transition, not one per attempt");
    } finally {
      await dnsmasq.start();
    }
    await waitFor("discovery_up is 1 again", async () => (await gauge(lb, "xmpp_lb_discovery_up", source)) === 1, 4000);
    assert.ok(logLines.some((l) => l.includes("discovery source answers again")));
    assert.equal(lost(), 1);
    await closeAll();
  });

  it("keeps the A answer when the resolver refuses AAAA, and the AAAA answer when it refuses A, and says which query failed", async () => {
    const v4only = "refuses-aaaa.disco.test";
    const v6only = "refuses-a.disco.test";
    const refusing = await startDnsmasq({ hosts: [["127.0.1.1", v4only], ["127.0.1.2", v4only], ["fd00::7", v6only]], refuse: [v4only, v6only] });
    type Line = { level: number; msg: string; type?: string; code?: string };
    const warnings = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line).filter((l) => l.level === 40 && /^(DNS query|discovery source)/.test(l.msg));
    try {
      const r = refusing.resolver();
      assert.deepEqual((await r.resolve4(v4only)).sort(), ["127.0.1.1", "127.0.1.2"]);
      await assert.rejects(r.resolve6(v4only), { code: "EREFUSED" }, "the resolver refuses AAAA of the A-only name");
      assert.deepEqual(await r.resolve6(v6only), ["fd00::7"]);
      await assert.rejects(r.resolve4(v6only), { code: "EREFUSED" }, "and A of the AAAA-only name");

      const lines: string[] = [];
      const lb = await startBalancer({ discover: `dns://${v4only}:${port}`, dnsServer: refusing.server }, lines);
      balancers.push(lb);
      assert.deepEqual(ids(lb), [`127.0.1.1:${port}`, `127.0.1.2:${port}`], "the A answer's nodes, from the first answer on");
      for (let i = 0; i < 3; i++) assert.ok(["n1", "n2"].includes(await nodeOf(await connect(lb))), "logins find a node");
      await sleep(2200); // asked again (TTL 1 s): still the A nodes, and no new warning
      assert.deepEqual(ids(lb), [`127.0.1.1:${port}`, `127.0.1.2:${port}`]);
      assert.deepEqual(warnings(lines).map((l) => [l.type, l.code]), [["AAAA", "EREFUSED"]], "one warning, naming the query (AAAA, refused), and the source is not lost");

      const v6lines: string[] = [];
      const v6lb = await startBalancer({ discover: `dns://${v6only}:${port}`, dnsServer: refusing.server }, v6lines);
      balancers.push(v6lb);
      assert.deepEqual(ids(v6lb), [`[fd00::7]:${port}`], "the AAAA answer's node");
      assert.deepEqual(warnings(v6lines).map((l) => [l.type, l.code]), [["A", "EREFUSED"]]);
    } finally {
      await closeAll();
      await refusing.stop();
    }
  });

  it("follows a nodes file: changes within a second, a broken file keeps the last good list and says where", async () => {
    const file = path.join(dir, "nodes.json");
    const spec = (i: number): string => `id=n${i},internal=${node(i).internal.host}:${node(i).internal.port}`;
    const write = (text: string): void => {
      // As a configuration manager does: a temp file renamed over the old one.
      writeFileSync(`${file}.tmp`, text);
      renameSync(`${file}.tmp`, file);
    };
    write(JSON.stringify([spec(1), { id: "n2", internal: `${node(2).internal.host}:${node(2).internal.port}`, weight: 2 }]));
    const source = `file://${file}`;
    const logLines: string[] = [];
    const lb = await startBalancer({ discover: source }, logLines);
    balancers.push(lb);
    assert.deepEqual(ids(lb), ["n1", "n2"]);
    assert.equal(lb.balancer.nodes.table.get("n2")!.weight, 2);
    assert.equal(lb.balancer.nodes.table.get("n1")!.source, "file");

    let changed = Date.now();
    write(JSON.stringify([spec(2), spec(3)], null, 2));
    await waitFor("the table follows the file", () => JSON.stringify(ids(lb)) === '["n2","n3"]', 1000);
    assert.ok(Date.now() - changed < 1000);
    for (let i = 0; i < 4; i++) assert.ok(["n2", "n3"].includes(await nodeOf(await connect(lb))));

    // In place, with a comma missing on line 3.
    writeFileSync(file, `[\n  "${spec(2)}"\n  "${spec(4)}"\n]\n`);
    await waitFor("a warning names the syntax error", () => logLines.some((l) => l.includes("not valid JSON at line 3, column 3")), 2000);
    assert.deepEqual(ids(lb), ["n2", "n3"], "the last good list stays");
    assert.equal(await gauge(lb, "xmpp_lb_discovery_up", source), 0);
    assert.ok(["n2", "n3"].includes(await nodeOf(await connect(lb))));

    write(`[\n  "${spec(2)}",\n  { "id": "n9", "weight": 1 }\n]\n`);
    await waitFor("a warning names the item", () => logLines.some((l) => l.includes("item 2 (line 3, column 3) is not a node") && l.includes("internal=HOST:PORT is required")), 2000);
    assert.deepEqual(ids(lb), ["n2", "n3"]);

    rmSync(file);
    await waitFor("a missing file is said", () => logLines.some((l) => l.includes("cannot read the nodes file")), 2000);
    assert.deepEqual(ids(lb), ["n2", "n3"]);

    changed = Date.now();
    write(JSON.stringify([spec(1), spec(4)]));
    await waitFor("the table follows the fixed file", () => JSON.stringify(ids(lb)) === '["n1","n4"]', 1000);
    assert.ok(Date.now() - changed < 1000);
    assert.equal(await gauge(lb, "xmpp_lb_discovery_up", source), 1);
    assert.ok(logLines.some((l) => l.includes("discovery source answers again")));
    assert.ok(["n1", "n4"].includes(await nodeOf(await connect(lb))));
    await closeAll();
  });

  it("refuses a bad --discover URL: ConfigError from resolveConfig, exit 2 from the CLI", async () => {
    const bad = ["dns://", "http://nodes.example.com", "dns://10.0.0.1:5222", "dns+srv://_xmpp-client._tcp.example.com:5222", "file://nodes.json", "dns://nodes.example.com:5222?external=%x", "dns+srv://_x._tcp.example.com?weight=2"];
    for (const url of bad) {
      assert.throws(() => resolveConfig({ domain: "lb.test", allowPlaintext: true, discover: url }), (err: unknown) => err instanceof ConfigError && /--discover/.test(err.message), url);
    }
    const { code, stderr } = await runCli(["--domain", "lb.test", "--allow-plaintext", "--discover", "dns+srv://"]).done;
    assert.equal(code, 2);
    assert.match(stderr, /^xmpp-lb: --discover 'dns\+srv:\/\/': .*\n/);
    assert.equal(stderr.trim().split("\n").length, 2, "one line (and the --help hint)");
  });

  it("re-reads a nodes file on SIGHUP (the CLI's hook), even when no watch saw the change", async () => {
    // The file is edited through a hard link in another directory: the watch on the file's own directory hears nothing,
    // and the periodic check is an hour away.
    const watchedDir = mkdtempSync(path.join(dir, "w-"));
    const otherDir = mkdtempSync(path.join(dir, "o-"));
    const file = path.join(watchedDir, "nodes.json");
    writeFileSync(file, JSON.stringify([`id=n1,internal=${node(1).internal.host}:${node(1).internal.port}`]));
    linkSync(file, path.join(otherDir, "edit.json"));
    const { child, done, stdout } = runCli([
      "--listen", "127.0.0.1:0", "--domain", "lb.test", "--allow-plaintext", "--log-level", "info",
      "--discover", `file://${file}`, "--discover-min-interval", "3600", "--discover-max-interval", "3600",
    ]);
    try {
      await listeningPort(child);
      assert.match(stdout(), /"node":"n1".*"msg":"node joined"/);
      writeFileSync(path.join(otherDir, "edit.json"), JSON.stringify([`id=n2,internal=${node(2).internal.host}:${node(2).internal.port}`]));
      await sleep(400);
      assert.doesNotMatch(stdout(), /"node":"n2".*"msg":"node joined"/, "nothing saw the edit yet");
      child.kill("SIGHUP");
      await waitFor("the file is re-read on SIGHUP", () => /"node":"n2".*"msg":"node joined"/.test(stdout()) && /"node":"n1".*"msg":"node left/.test(stdout()), 3000);
      assert.match(stdout(), /re-reading the discovery sources/);
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal((await done).code, 0);
  });
});

/** The re-resolution schedule of a DNS source, against a resolver the test scripts. */
describe("DNS source timing", () => {
  const fake = () => {
    const calls: number[] = [];
    let answer: () => Promise<Array<{ address: string; ttl: number }>> = async () => [{ address: "10.0.0.1", ttl: 1 }];
    const none = async (): Promise<never> => Promise.reject(Object.assign(new Error("queryAaaa ENODATA"), { code: "ENODATA" }));
    const resolver: DnsResolver = {
      resolve4: async () => {
        calls.push(Date.now());
        return answer();
      },
      resolve6: none,
      resolveSrv: none,
    };
    return { calls, resolver, set: (f: typeof answer) => (answer = f) };
  };
  const run = (resolver: DnsResolver, minIntervalMs: number, maxIntervalMs: number) => {
    const lines: string[] = [];
    const metrics = new Metrics();
    const source = new DnsSource(parseDiscoverUrl("dns://nodes.example:5222") as DnsDiscovery, {
      resolver,
      minIntervalMs,
      maxIntervalMs,
      metrics,
      log: createLogger("trace", { write: (line: string) => void lines.push(line) }),
    });
    const lists: MemberNode[][] = [];
    const stop = source.start((nodes) => lists.push(nodes));
    return { source, lists, lines, stop, up: async () => /xmpp_lb_discovery_up\{[^}]*\} (\d)/.exec(await metrics.registry.getSingleMetricAsString("xmpp_lb_discovery_up"))?.[1] };
  };
  const gaps = (calls: number[]): number[] => calls.slice(1).map((t, i) => t - calls[i]!);

  it("re-resolves at the record TTL, clamped between the min and max intervals", async () => {
    const f = fake();
    f.set(async () => [{ address: "10.0.0.1", ttl: 0.3 }, { address: "10.0.0.2", ttl: 60 }]);
    const s = run(f.resolver, 100, 500);
    await sleep(1050);
    s.stop();
    assert.deepEqual(s.lists.at(-1)!.map((n) => n.id), ["10.0.0.1:5222", "10.0.0.2:5222"]);
    assert.ok(gaps(f.calls).every((g) => g >= 280 && g < 700), `the shortest TTL (300 ms): ${gaps(f.calls)}`);

    const slow = fake();
    slow.set(async () => [{ address: "10.0.0.1", ttl: 3600 }]);
    const t = run(slow.resolver, 100, 300);
    await sleep(700);
    t.stop();
    assert.ok(gaps(slow.calls).every((g) => g >= 280 && g < 700), `a long TTL waits the max interval: ${gaps(slow.calls)}`);

    const zero = fake();
    zero.set(async () => [{ address: "10.0.0.1", ttl: 0 }]);
    const z = run(zero.resolver, 150, 1000);
    await sleep(500);
    z.stop();
    assert.ok(gaps(zero.calls).every((g) => g >= 140), `TTL 0 waits the min interval: ${gaps(zero.calls)}`);
  });

  it("uses one record type's answer when the other's query fails, that type keeping its last records", async () => {
    const fail = (code: string) => async (): Promise<never> => Promise.reject(Object.assign(new Error(`query ${code} nodes.example`), { code }));
    let a: () => Promise<Array<{ address: string; ttl: number }>> = async () => [{ address: "10.0.0.1", ttl: 1 }];
    let aaaa: () => Promise<Array<{ address: string; ttl: number }>> = fail("ESERVFAIL");
    const resolver: DnsResolver = { resolve4: () => a(), resolve6: () => aaaa(), resolveSrv: fail("ENODATA") };
    const s = run(resolver, 50, 50);
    const listed = (): string[] | undefined => s.lists.at(-1)?.map((n) => n.id);
    const dnsWarnings = (): Array<[string, string]> => s.lines.map((l) => JSON.parse(l) as { level: number; msg: string; type: string; code: string }).filter((l) => l.level === 40 && l.msg.startsWith("DNS query")).map((l) => [l.type, l.code]);
    await waitFor("the A answer", () => listed()?.join() === "10.0.0.1:5222");
    assert.equal(await s.up(), "1", "the source answered, although AAAA failed");

    aaaa = async () => [{ address: "2001:db8::2", ttl: 1 }];
    await waitFor("both answers", () => listed()?.join() === "10.0.0.1:5222,[2001:db8::2]:5222");
    aaaa = fail("EREFUSED");
    a = async () => [{ address: "10.0.0.3", ttl: 1 }];
    await waitFor("the new A answer", () => listed()?.join() === "10.0.0.3:5222,[2001:db8::2]:5222", 2000);
    a = fail("ETIMEOUT");
    aaaa = async () => [{ address: "2001:db8::4", ttl: 1 }];
    await waitFor("the reverse: the new AAAA answer, the last A records", () => listed()?.join() === "10.0.0.3:5222,[2001:db8::4]:5222", 2000);
    aaaa = fail("ESERVFAIL");
    await waitFor("up is 0 when both fail", async () => (await s.up()) === "0", 2000);
    assert.equal(listed()?.join(), "10.0.0.3:5222,[2001:db8::4]:5222", "the last list stays");
    s.stop();
    assert.deepEqual(dnsWarnings(), [["AAAA", "ESERVFAIL"], ["AAAA", "EREFUSED"], ["A", "ETIMEOUT"]], "each query named when it starts failing, once");
  });

  it("keeps the last list through failures and empty answers, backs off, and says so once per transition", async () => {
    const f = fake();
    const s = run(f.resolver, 100, 400);
    await waitFor("the first answer", () => s.lists.length === 1);
    f.set(async () => Promise.reject(Object.assign(new Error("queryA ETIMEOUT nodes.example"), { code: "ETIMEOUT" })));
    await waitFor("up is 0", async () => (await s.up()) === "0", 2000);
    const failedAt = f.calls.length;
    await sleep(1200);
    const retries = gaps(f.calls.slice(failedAt - 1));
    assert.ok(retries.length >= 3 && retries.length <= 6, `backoff 100, 200, 400, 400…: ${retries}`);
    assert.ok(retries.at(-1)! >= 380, `up to the max interval: ${retries}`);
    f.set(async () => Promise.reject(Object.assign(new Error("queryA ENOTFOUND nodes.example"), { code: "ENOTFOUND" })));
    await sleep(500);
    assert.equal(s.lists.length, 1, "no empty list is ever handed over");
    assert.equal(s.lines.filter((l) => l.includes('"discovery source failed')).length, 1, "one warning when lost");
    f.set(async () => [{ address: "10.0.0.3", ttl: 1 }]);
    await waitFor("back", async () => (await s.up()) === "1", 2000);
    assert.deepEqual(s.lists.at(-1)!.map((n) => n.id), ["10.0.0.3:5222"]);
    assert.equal(s.lines.filter((l) => l.includes("discovery source answers again")).length, 1);
    s.stop();
  });
});
