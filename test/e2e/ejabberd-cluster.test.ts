import assert from "node:assert/strict";
import { after, afterEach, before, describe, it, type TestContext } from "node:test";
import { xml, type Client } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { nodeFlags, startEjabberdCluster, type EjabberdCluster } from "../support/ejabberd.js";
import { login, nodeOf, remoteOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { SmClient } from "../support/sm-client.js";
import { MessageLoad } from "../support/message-load.js";
import { restartNode, spread, type RestartHooks, type RestartStep } from "../support/rolling-restart.js";
import { sleep, waitFor } from "../support/wait.js";

const PASSWORD = "cluster password";
const MUC = "conference.lb.test";
/** The accounts of the load tests: three per node when spread evenly. */
const LOAD_USERS = Array.from({ length: 9 }, (_, i) => `load${i}`);
const USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", ...LOAD_USERS];

/** Resolves with the first stanza `client` receives that `match` accepts. */
function next(client: Client, match: (s: Element) => boolean, timeoutMs = 10_000): Promise<Element> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off("stanza", onStanza);
      reject(new Error(`no matching stanza for ${client.jid} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onStanza = (s: Element): void => {
      if (!match(s)) return;
      clearTimeout(timer);
      client.off("stanza", onStanza);
      resolve(s);
    };
    client.on("stanza", onStanza);
  });
}

const bare = (c: Client): string => `${c.jid!.local}@${c.jid!.domain}`;

/**
 * A real three-node ejabberd cluster (one Mnesia: sessions, rosters, offline
 * messages and MUC rooms are the cluster's) on 127.0.6.1-3, behind the
 * balancer (test/support/ejabberd.ts, `clustered: true`). Unlike the
 * independent nodes of ejabberd.test.ts, a user on one node reaches users on
 * the others. Messages are counted with SmClient, whose XEP-0198 counting is
 * right (sm-client.ts says why not @xmpp/client).
 */
describe("a real ejabberd cluster behind the balancer", () => {
  let cluster: EjabberdCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const smClients: SmClient[] = [];

  const balancer = async (input: Parameters<typeof startBalancer>[0] = {}): Promise<TestBalancer> => {
    const lb = await startBalancer({ node: nodeFlags(cluster.nodes), ...input });
    balancers.push(lb);
    return lb;
  };
  const user = async (port: number, username: string, opts: { resource?: string; announceJid?: boolean } = {}): Promise<Client> => {
    const c = await login({ port, username, password: PASSWORD, ...opts });
    clients.push(c);
    return c;
  };
  const smUser = async (port: number, username: string): Promise<SmClient> => {
    const c = await SmClient.connect({ port, username, password: PASSWORD });
    smClients.push(c);
    return c;
  };
  /** No forwarded connection left on the balancer: the next logins are placed on the nodes' real load. */
  const idle = (lb: TestBalancer): Promise<void> =>
    waitFor("the balancer's forwarded connections to close", async () => [...(await lb.balancer.store.loads()).values()].every((l) => l.connections === 0), 10_000);
  const hooksFor = (lb: TestBalancer): RestartHooks => ({
    drain: (id) => lb.balancer.store.drain(id),
    undrain: (id) => lb.balancer.store.undrain(id),
    up: (id) => lb.balancer.nodes.table.get(id)?.health === "up", // health: the node is still drained then
  });

  before(async () => {
    cluster = await startEjabberdCluster({ count: 3, clustered: true, users: USERS.map((u) => [u, PASSWORD]) });
  });
  // Clients log out (</stream:stream>), so each test starts with no directory entries and no load.
  afterEach(async () => {
    await stopAll(clients.splice(0));
    await Promise.all(smClients.splice(0).map((c) => c.close()));
    await Promise.all(balancers.splice(0).map((b) => b.close()));
  });
  after(async () => {
    for (const c of smClients) c.destroy();
    await cluster?.stop();
  });

  it("spreads users over every node in both modes, and keeps one account's resources on one node", async () => {
    const lb = await balancer({ listen: ["127.0.0.1:0", "127.0.0.1:0,mode=redirect,phase=open"] });
    const [forwardPort, redirectPort] = lb.ports as [number, number];
    const forwarded = [];
    for (const name of ["alice", "bob", "carol", "dave", "erin", "frank"]) forwarded.push(await nodeOf(await user(forwardPort, name)));
    assert.deepEqual([...new Set(forwarded)].sort(), ["n1", "n2", "n3"], `forwarded: ${forwarded.join(" ")}`);

    const redirected = [];
    for (const name of ["grace", "heidi", "ivan", "judy", "mallory", "niaj"]) {
      const c = await user(redirectPort, name, { announceJid: true });
      const node = await nodeOf(c);
      const { host, port } = cluster.nodes.find((n) => n.id === node)!.external;
      assert.deepEqual(remoteOf(c), { host, port }, "the client went to the node itself");
      redirected.push(node);
    }
    assert.deepEqual([...new Set(redirected)].sort(), ["n1", "n2", "n3"], `redirected: ${redirected.join(" ")}`);

    // olivia's resources, through either listener, meet on one node.
    const resources = [await user(forwardPort, "olivia", { resource: "desk" }), await user(forwardPort, "olivia", { resource: "phone" }), await user(redirectPort, "olivia", { resource: "tablet", announceJid: true })];
    const nodes = await Promise.all(resources.map(nodeOf));
    assert.equal(new Set(nodes).size, 1, `olivia's resources: ${nodes.join(" ")}`);
  });

  it("carries chat, a presence subscription and a MUC room between users on different nodes", async () => {
    const lb = await balancer();
    // least-conn on an idle balancer: three logins in a row land on three nodes.
    const [a, b, c] = [await user(lb.port, "alice"), await user(lb.port, "bob"), await user(lb.port, "carol")] as [Client, Client, Client];
    const nodes = await Promise.all([a, b, c].map(nodeOf));
    assert.deepEqual([...nodes].sort(), ["n1", "n2", "n3"]);
    // Available: a message or a subscription request to a bare JID without an available resource is stored offline.
    await Promise.all([a, b, c].map((x) => x.send(xml("presence"))));

    const chat = next(b, (s) => s.is("message") && s.getChildText("body") === "across the cluster");
    await a.send(xml("message", { to: bare(b), type: "chat" }, xml("body", {}, "across the cluster")));
    assert.equal((await chat).attrs.from, a.jid!.toString());

    // alice asks for bob's presence; bob (on another node) approves; bob's presence reaches alice.
    const asked = next(b, (s) => s.is("presence") && s.attrs.type === "subscribe");
    await a.send(xml("presence", { to: bare(b), type: "subscribe" }));
    await asked;
    const bobsPresence = next(a, (s) => s.is("presence") && s.attrs.from === b.jid!.toString() && s.attrs.type === undefined);
    await b.send(xml("presence", { to: bare(a), type: "subscribed" }));
    await bobsPresence;

    // One room, an occupant on each node; a message to the room reaches all three.
    await cluster.converged();
    const room = `lobby@${MUC}`;
    const occupants = [a, b, c];
    for (const [i, occupant] of occupants.entries()) {
      const self = (s: Element): boolean => s.getChild("x", "http://jabber.org/protocol/muc#user")?.getChildren("status").some((st) => st.attrs.code === "110") ?? false;
      const joined = next(occupant, (s) => s.is("presence") && s.attrs.from === `${room}/p${i}` && self(s));
      await occupant.send(xml("presence", { to: `${room}/p${i}` }, xml("x", { xmlns: "http://jabber.org/protocol/muc" })));
      await joined;
    }
    const heard = occupants.map((o) => next(o, (s) => s.is("message") && s.attrs.type === "groupchat" && s.getChildText("body") === "hello, room"));
    await c.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, "hello, room")));
    const got = await Promise.all(heard);
    assert.deepEqual(got.map((m) => m.attrs.from), [`${room}/p2`, `${room}/p2`, `${room}/p2`]);
  });

  it("resumes a broken XEP-0198 stream through the balancer on the same node, with what was sent meanwhile", async () => {
    const lb = await balancer();
    const [sender, receiver] = [await smUser(lb.port, "dave"), await smUser(lb.port, "erin")];
    const node = receiver.node;
    receiver.breakConnection(); // no </stream:stream>: the node keeps the session for a resumption
    for (let i = 0; i < 5; i++) sender.sendMessage(receiver.jid, `while-away-${i}`);
    await waitFor("the receiver's resumption", () => receiver.sessions.length === 2 && receiver.online, 10_000);
    assert.deepEqual(receiver.sessions.map((s) => [s.node, s.resumed]), [[node, false], [node, true]], "resumed, on its own node");
    await waitFor("the messages sent meanwhile", () => receiver.received.size === 5, 5_000);
    assert.deepEqual([...receiver.received.values()], [1, 1, 1, 1, 1], "each exactly once");
  });

  it("restarts every node in turn under 10 messages/s with stream management, losing nothing; then the same users spread over every node again", async (t: TestContext) => {
    const lb = await balancer();
    await idle(lb);
    const users: SmClient[] = [];
    for (const name of LOAD_USERS) users.push(await smUser(lb.port, name));
    assert.deepEqual(spread(cluster, users), { n1: 3, n2: 3, n3: 3 }, "least-conn on an idle cluster");

    const load = new MessageLoad(users, 10, "rolling-");
    const steps: RestartStep[] = [];
    load.start();
    try {
      await sleep(1000);
      for (const node of cluster.nodes) steps.push(await restartNode(cluster, node, users, hooksFor(lb)));
      await sleep(1000);
    } finally {
      load.stop();
    }
    await load.settle(15_000);
    const inSession = load.report();
    for (const s of steps) t.diagnostic(`${s.node}: ${s.moved.length} users moved (${s.moved.map((m) => m.to).join(" ")}), all back ${s.movedMs} ms after the command that ended their sessions; node back ${s.downMs} ms after SIGTERM`);
    assert.ok(inSession.sent >= 100, `a steady load throughout (${inSession.sent} messages)`);
    for (const s of steps) assert.equal(s.moved.length > 0, true, `${s.node} had users to move`);

    // Nobody logged in since the last node came back: it is empty, its users live on the others.
    const before = spread(cluster, users);
    const last = cluster.nodes.at(-1)!.id;
    assert.equal(before[last], 0, `the last restarted node is empty: ${JSON.stringify(before)}`);
    // Everyone logs out (</stream:stream>): nothing to resume, so the directory forgets them at once, and they spread again.
    await Promise.all(smClients.splice(0).map((c) => c.close()));
    await idle(lb);
    const again: SmClient[] = [];
    for (const name of LOAD_USERS) again.push(await smUser(lb.port, name));
    const after = spread(cluster, again);
    t.diagnostic(`users per node after the rolling restart: ${JSON.stringify(before)}; logged in again: ${JSON.stringify(after)}`);
    assert.deepEqual(after, { n1: 3, n2: 3, n3: 3 });

    // A message that reached a moving user between its sessions was stored offline; one stored just as the new
    // session announced itself (initial presence) waits for the next: it comes now.
    const deadline = Date.now() + 5000;
    while (load.report(again).lost.length > 0 && Date.now() < deadline) await sleep(100);
    const report = load.report(again);
    t.diagnostic(`messages: ${report.sent} sent, ${report.sent - inSession.lost.length} received in session, ${report.late.length} at the next login (offline storage), ${report.lost.length} lost, ${report.duplicates} twice, ${report.bounced} bounced`);
    assert.deepEqual(report.lost.map((m) => MessageLoad.story(m, steps[0]!.endedAt)), [], `nothing lost (sessions ended at ${steps.map((s) => s.endedAt - steps[0]!.endedAt).join(", ")})`);
    assert.equal(report.bounced, 0);
  });

  it("loses, when a node is killed with SIGKILL, only messages to its own users that they had not yet acknowledged", async (t: TestContext) => {
    const lb = await balancer();
    await idle(lb);
    const users: SmClient[] = [];
    for (const name of LOAD_USERS) users.push(await smUser(lb.port, name));
    const victim = cluster.nodes[1]!;
    const victims = new Set(users.filter((c) => c.node === victim.id));
    assert.ok(victims.size > 0);

    const load = new MessageLoad(users, 10, "killed-");
    let killed = 0;
    let backAt = new Map<SmClient, number>();
    load.start();
    try {
      await sleep(2000);
      killed = Date.now();
      await victim.kill("SIGKILL");
      await waitFor("the killed node's users back on other nodes", () => [...victims].every((c) => c.online && c.node !== victim.id), 20_000);
      backAt = new Map([...victims].map((c) => [c, c.sessions.at(-1)!.at]));
      await sleep(2000);
    } finally {
      load.stop();
    }
    await load.settle(15_000);
    const report = load.report();
    t.diagnostic(`${victims.size} users moved, all back ${Math.max(...backAt.values()) - killed} ms after SIGKILL; messages: ${report.sent} sent, ${report.lost.length} lost, ${report.duplicates} twice`);

    // Every message a survivor was to get arrived, and so did every message the victims sent (resent if the node
    // died before acknowledging it). What is lost was on its way to a victim and never reached it: it was
    // neither received nor so acknowledged before its new session opened elsewhere.
    for (const m of report.lost) {
      assert.ok(victims.has(m.to), `${m.id} to ${m.to.jid}, not a user of the killed node`);
      assert.ok(m.at < backAt.get(m.to)!, `${m.id} was sent after ${m.to.jid} was back`);
    }
    assert.equal(report.bounced, 0);
    assert.ok(report.sent - report.lost.length > 0);
  });
});
