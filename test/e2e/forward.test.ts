import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { once } from "node:events";
import { xml, type Client } from "@xmpp/client";
import { NodeTable } from "../../src/cluster/node.js";
import { hashStrategy } from "../../src/router/strategies.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { RawXmpp, plainAuth, trapListener } from "../support/raw.js";

const PASSWORD = "correct horse";
const SPREAD_USERS = Array.from({ length: 20 }, (_, i) => `spread${String(i).padStart(2, "0")}`);

/** Forward mode against three real Prosody nodes; every node's external address is a trap that must never be dialed. */
describe("forward mode", () => {
  let cluster: ProsodyCluster;
  let trap: Awaited<ReturnType<typeof trapListener>>;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];

  // Redirects would point at the trap: forwarding must never dial it.
  const nodes = (): string[] => nodeFlags(cluster.nodes, { host: "127.0.0.1", port: trap.port });
  const balancer = async (extra: Parameters<typeof startBalancer>[0] = {}): Promise<TestBalancer> => {
    const lb = await startBalancer({ mode: "forward", node: nodes(), ...extra });
    balancers.push(lb);
    return lb;
  };
  const connect = async (lb: TestBalancer, username: string, extra: Partial<Parameters<typeof login>[0]> = {}): Promise<Client> => {
    const c = await login({ port: lb.port, username, password: PASSWORD, ...extra });
    clients.push(c);
    return c;
  };

  before(async () => {
    trap = await trapListener();
    cluster = await startProsodyCluster({ count: 3, users: ["alice", "bob", "carol", "dave", "erin", ...SPREAD_USERS].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
    await trap?.close();
    assert.equal(trap.connections(), 0, "forwarding dialed a node's external address");
  });

  it("binds through the balancer with SCRAM-SHA-1 and with PLAIN", async () => {
    const scram = await connect(await balancer({ saslMechanisms: ["SCRAM-SHA-1"] }), "alice");
    assert.equal(scram.jid?.toString().split("/")[0], "alice@lb.test");
    const plainLb = await balancer({ saslMechanisms: ["PLAIN"] });
    const plain = await connect(plainLb, "bob");
    assert.equal(plain.jid?.toString().split("/")[0], "bob@lb.test");
    assert.ok(cluster.nodes.map((n) => n.id).includes(await nodeOf(plain)));
    const forwarded = await plainLb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_connections_total");
    assert.match(forwarded, /outcome="forwarded",transport="tcp"} 1/);
  });

  it("logs each decision with the JID, never a password or SASL payload, even at trace level", async () => {
    const lines: string[] = [];
    const lb = await startBalancer({ mode: "forward", node: nodes(), saslMechanisms: ["PLAIN"] }, lines);
    balancers.push(lb);
    await connect(lb, "alice", { resource: "logcheck" });
    const payload = Buffer.from(`\0alice\0${PASSWORD}`).toString("base64");
    const text = lines.join("");
    assert.match(text, /"msg":"forwarded"/);
    assert.match(text, /"jid":"alice@lb.test"/);
    assert.match(text, /"conn":"[0-9a-z]+","client":"127\.0\.0\.1:\d+","listener":"127\.0\.0\.1:0"/);
    assert.ok(!text.includes(PASSWORD) && !text.includes(payload), "a password or SASL payload reached the log");
    for (const line of lines) assert.ok((JSON.parse(line) as { level: number }).level < 50, `logged at error level: ${line}`);
  });

  it("puts every resource of an account on one node, and carries messages both ways", async () => {
    const lb = await balancer();
    const phone = await connect(lb, "carol", { resource: "phone" });
    const laptop = await connect(lb, "carol", { resource: "laptop" });
    assert.equal(await nodeOf(phone), await nodeOf(laptop));

    const nextBody = (to: Client): Promise<string | null> =>
      new Promise((resolve) => to.on("stanza", (s: import("@xmpp/xml").Element) => s.is("message") && resolve(s.getChildText("body"))));
    const ping = nextBody(laptop);
    await phone.send(xml("message", { to: "carol@lb.test/laptop", type: "chat" }, xml("body", {}, "ping from phone")));
    assert.equal(await ping, "ping from phone");
    const pong = nextBody(phone);
    await laptop.send(xml("message", { to: "carol@lb.test/phone", type: "chat" }, xml("body", {}, "pong from laptop")));
    assert.equal(await pong, "pong from laptop");
  });

  it("spreads 20 accounts over every node with least-conn, evenly", async () => {
    const lb = await balancer({ strategy: "least-conn" });
    const counts = new Map<string, number>();
    for (const user of SPREAD_USERS) {
      const node = await nodeOf(await connect(lb, user));
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    assert.equal(counts.size, 3, JSON.stringify([...counts]));
    for (const n of counts.values()) assert.ok(n === 6 || n === 7, JSON.stringify([...counts]));
  });

  it("spreads 20 accounts over every node with hash, exactly where rendezvous hashing says", async () => {
    const lb = await balancer({ strategy: "hash" });
    const table = NodeTable.fromSpecs(lb.balancer.nodes.table.nodes);
    const seen = new Set<string>();
    for (const user of SPREAD_USERS) {
      const node = await nodeOf(await connect(lb, user));
      assert.equal(node, hashStrategy.pick(table.nodes, `${user}@lb.test`, new Map()).id, user);
      seen.add(node);
    }
    assert.equal(seen.size, 3);
  });

  it("resumes an XEP-0198 session through the balancer on the node that holds it", async () => {
    const lb = await balancer();
    const xmpp = await connect(lb, "dave", { reconnect: true });
    const sm = xmpp.streamManagement;
    if (!sm.enabled) await once(sm, "enabled" as never, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    assert.ok(sm.id, "stream management was enabled with resumption");
    const before = await nodeOf(xmpp);
    const resumed = once(sm, "resumed", { signal: AbortSignal.timeout(15000) });
    xmpp.socket?.socket?.destroy(); // the network drops: no </stream:stream>
    await resumed;
    assert.equal(await nodeOf(xmpp), before);
  });

  it("opens the stream at the node on the client's own header in phase open", async () => {
    const lb = await balancer({ phase: "open", saslMechanisms: ["PLAIN"] });
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test' from='erin@lb.test' version='1.0'>`);
    // The features after TLS are the node's own (Prosody's), not the balancer's.
    assert.doesNotMatch(c.received, /id='[0-9a-f]{16}'/, "the stream header comes from the node, not the balancer");
    c.send(plainAuth("erin", PASSWORD));
    await c.until(/<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/);
    c.destroy();
  });

  it("keeps no directory entry for logins the node refuses, and counts them", async () => {
    const lb = await balancer({ saslMechanisms: ["PLAIN"] });
    const made = Array.from({ length: 20 }, (_, i) => `nobody${i}`);
    await Promise.all(
      made.map(async (user) => {
        const c = await RawXmpp.connect(lb.port);
        await c.secureStream();
        c.send(plainAuth(user, "wrong"));
        await c.until(/<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized\/>/);
        c.destroy();
      }),
    );
    await new Promise((r) => setTimeout(r, 100));
    for (const user of made) assert.equal(await lb.balancer.store.lookup(`${user}@lb.test`), null, `${user} left an entry`);
    const failures = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_auth_failures_total");
    const counted = [...failures.matchAll(/node="n\d"} (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    assert.equal(counted, 20);
    // A login the node accepts is kept.
    await connect(lb, "dave");
    assert.notEqual(await lb.balancer.store.lookup("dave@lb.test"), null);
  });

  it("refuses logins from an address, and for an account, past their failed-login limits", async () => {
    const lb = await balancer({ saslMechanisms: ["PLAIN"], maxAuthFailuresPerAddress: 3, maxAuthFailuresPerJid: 2 });
    const attempt = async (from: string, user: string, password: string): Promise<string> => {
      const c = await RawXmpp.connect(lb.port, "127.0.0.1", { localAddress: from });
      await c.secureStream();
      c.send(plainAuth(user, password));
      const text = await c.until(/<success|<failure|<stream:error>/);
      c.destroy();
      return text;
    };
    for (let i = 0; i < 3; i++) assert.match(await attempt("127.0.0.30", `ghost${i}`, "wrong"), /<failure/);
    assert.match(await attempt("127.0.0.30", "alice", PASSWORD), /<policy-violation/, "the address is refused, even with the right password");
    assert.match(await attempt("127.0.0.31", "alice", PASSWORD), /<success/, "another address is not");
    for (const from of ["127.0.0.32", "127.0.0.33"]) assert.match(await attempt(from, "bob", "wrong"), /<failure/);
    assert.match(await attempt("127.0.0.34", "bob", PASSWORD), /<policy-violation/, "the account is refused from anywhere");
    const rejected = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_rejected_total");
    assert.match(rejected, /reason="auth-failures-address"} 1/);
    assert.match(rejected, /reason="auth-failures-jid"} 1/);
  });

  it("tries the next node when the JID's node refuses the dial, and marks it down", async () => {
    const lb = await balancer({ healthInterval: 600 });
    const first = await connect(lb, "erin");
    const victimId = await nodeOf(first);
    const victim = cluster.nodes.find((n) => n.id === victimId)!;
    await victim.kill("SIGKILL");
    await once(first, "disconnect" as never, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    try {
      const again = await connect(lb, "erin");
      const now = await nodeOf(again);
      assert.notEqual(now, victimId);
      assert.equal(lb.balancer.nodes.table.get(victimId)?.state, "down");
      assert.equal(await lb.balancer.store.lookup("erin@lb.test"), now, "the directory follows the user");
    } finally {
      await victim.start();
    }
  });
});
