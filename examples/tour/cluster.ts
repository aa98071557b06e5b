/**
 * The cluster tour (`npm run tour -- --cluster`): a real three-node ejabberd
 * cluster (one Mnesia) on 127.0.6.1-3, a Redis, and two balancer instances
 * (the real command line) sharing it as their store. Users log in through
 * both instances and land on different nodes; one sends another a message
 * across the cluster. Then, under a steady load of 10 messages a second with
 * stream management, one node is drained (`xmpp-lb node drain`), its
 * sessions ended (<system-shutdown/>: the users reconnect through the
 * balancer), stopped, started again and undrained, as in a rolling restart:
 * the tour prints who moved where, and the messages sent against those
 * received.
 * `--keep` leaves it all running until Ctrl-C (alice@localhost,
 * "tour-password", through either instance). Needs Debian's ejabberd and
 * redis-server packages (`.ci/run` installs them), and borrows the test
 * suite's launchers and clients.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { xml } from "@xmpp/client";
import { login, nodeOf } from "../../test/support/clients.js";
import { ejabberdInstalled, nodeFlags, startEjabberdCluster } from "../../test/support/ejabberd.js";
import { MessageLoad } from "../../test/support/message-load.js";
import { redisInstalled, startRedis } from "../../test/support/redis.js";
import { restartNode, spread } from "../../test/support/rolling-restart.js";
import { SmClient } from "../../test/support/sm-client.js";
import { sleep } from "../../test/support/wait.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOMAIN = "localhost";
const PASSWORD = "tour-password";
const LOAD_USERS = ["user1", "user2", "user3", "user4", "user5", "user6"];
const keep = process.argv.includes("--keep");
const say = (line: string): void => void process.stdout.write(`\n== ${line}\n`);

const missing = [...(ejabberdInstalled() ? [] : ["ejabberd"]), ...(redisInstalled() ? [] : ["redis-server"])];
if (missing.length > 0) {
  console.error(`The cluster tour needs Debian's ${missing.join(" and ")} (apt-get install ${missing.join(" ")}; .ci/run installs them).`);
  process.exit(1);
}

interface Instance {
  name: string;
  port: number;
  admin: number;
  child: ChildProcess;
}

/** Runs `xmpp-lb ARGS` from the source; resolves when it has exited. */
async function xmppLb(args: string[]): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`xmpp-lb ${args.join(" ")} exited with ${code}`);
  return out.trim();
}

/** Starts a balancer instance with the real command line; echoes its decisions, prefixed with its name. */
async function startInstance(name: string, args: string[]): Promise<Instance> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let port = 0;
  let admin = 0;
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const entry = JSON.parse(line) as { msg: string; address?: { port: number }; jid?: string; node?: string; via?: string };
    if (entry.msg === "listening") port = entry.address!.port;
    else if (entry.msg.startsWith("admin endpoint")) admin = entry.address!.port;
    else if (entry.msg === "forwarded") console.log(`   [${name}] forwarded ${entry.jid} to ${entry.node} (${entry.via})`);
  });
  while (port === 0 || admin === 0) {
    if (child.exitCode !== null) throw new Error(`balancer ${name} did not start`);
    await sleep(50);
  }
  return { name, port, admin, child };
}

/**
 * Waits until both instances count `connections` forwarded connections in all:
 * each publishes its own counts to Redis every second, and least-conn places
 * the next login on what it sees.
 */
async function synced(connections: number): Promise<void> {
  const total = async (i: Instance): Promise<number> => {
    const { nodes } = (await (await fetch(`http://127.0.0.1:${i.admin}/nodes`)).json()) as { nodes: Array<{ connections: number }> };
    return nodes.reduce((sum, n) => sum + n.connections, 0);
  };
  const deadline = Date.now() + 10_000;
  while ((await Promise.all(instances.map(total))).some((n) => n !== connections) && Date.now() < deadline) await sleep(100);
}

/** Logs the load users in, alternately through A and B, each once the instances agree on the load. */
async function logInUsers(): Promise<SmClient[]> {
  const users: SmClient[] = [];
  for (const [i, name] of LOAD_USERS.entries()) {
    await synced(2 + i);
    users.push(await SmClient.connect({ port: instances[i % 2]!.port, domain: DOMAIN, username: name, password: PASSWORD }));
  }
  return users;
}

/** A node as one instance sees it (GET /nodes). */
async function nodeState(instance: Instance, id: string): Promise<{ health: string; state: string }> {
  const { nodes } = (await (await fetch(`http://127.0.0.1:${instance.admin}/nodes`)).json()) as { nodes: Array<{ id: string; health: string; state: string }> };
  return nodes.find((n) => n.id === id)!;
}

say("starting a three-node ejabberd cluster (127.0.6.1-3, one Mnesia), joined with join_cluster");
const started = Date.now();
const cluster = await startEjabberdCluster({ count: 3, clustered: true, domain: DOMAIN, users: ["alice", "bob", ...LOAD_USERS].map((u) => [u, PASSWORD]) });
for (const n of cluster.nodes) console.log(`   ${n.id}: ${n.erlangNode}, c2s for the balancer ${n.internal.host}:${n.internal.port}`);
console.log(`   one cluster in ${((Date.now() - started) / 1000).toFixed(1)} s: ${(await cluster.nodes[0]!.clusterNodes()).join(", ")}`);

say("starting Redis and two balancer instances sharing it");
const redis = await startRedis();
const common = [
  "--listen", "127.0.0.1:0",
  "--domain", DOMAIN,
  "--tls-cert", "examples/tls/server.pem",
  "--tls-key", "examples/tls/server.key",
  "--metrics", "127.0.0.1:0",
  "--store", redis.url,
  "--health-interval", "1",
  ...nodeFlags(cluster.nodes).flatMap((node) => ["--node", node]),
];
console.log(`   xmpp-lb ${common.join(" ")}`);
const instances = [await startInstance("A", common), await startInstance("B", common)];
for (const i of instances) console.log(`   instance ${i.name}: 127.0.0.1:${i.port}, admin http://127.0.0.1:${i.admin}/nodes`);
const [a, b] = instances as [Instance, Instance];

say("alice logs in through instance A, bob through instance B");
const alice = await login({ port: a.port, domain: DOMAIN, username: "alice", password: PASSWORD });
await synced(1);
const bob = await login({ port: b.port, domain: DOMAIN, username: "bob", password: PASSWORD });
const [aliceNode, bobNode] = [await nodeOf(alice), await nodeOf(bob)];
console.log(`   ${alice.jid} is on ${aliceNode}, ${bob.jid} is on ${bobNode}`);

say(`a message from alice (${aliceNode}) to bob (${bobNode}), across the cluster`);
const got = new Promise<string | null>((resolve) => bob.on("stanza", (s) => s.is("message") && resolve(s.getChildText("body"))));
await alice.send(xml("message", { to: bob.jid!.toString(), type: "chat" }, xml("body", {}, `hello from ${aliceNode}`)));
console.log(`   bob received: ${await got}`);

say("six users with stream management (XEP-0198), logged in through both instances");
const users = await logInUsers();
console.log(`   users per node: ${JSON.stringify(spread(cluster, users))}`);

const load = new MessageLoad(users, 10, "tour-");
load.start();
const busiest = cluster.nodes.reduce((best, n) => (users.filter((u) => u.node === n.id).length > users.filter((u) => u.node === best.id).length ? n : best));
say(`10 messages a second among them; restarting ${busiest.id} live: drain, end its sessions, SIGTERM, start, undrain`);
await sleep(2000);
const step = await restartNode(cluster, busiest, users, {
  drain: async (id) => console.log(`   $ xmpp-lb node drain ${id} --store ${redis.url}\n   ${await xmppLb(["node", "drain", id, "--store", redis.url])}`),
  undrain: async (id) => console.log(`   $ xmpp-lb node undrain ${id} --store ${redis.url}\n   ${await xmppLb(["node", "undrain", id, "--store", redis.url])}`),
  up: async (id) => (await Promise.all(instances.map((i) => nodeState(i, id)))).every((n) => n.health === "up"),
});
await sleep(2000);
load.stop();
await load.settle(15_000);
const inSession = load.report();

say(`what moved`);
for (const m of step.moved) console.log(`   ${m.jid}: ${step.node} -> ${m.to}`);
console.log(`   all back online ${step.movedMs} ms after the command that ended their sessions; ${step.node} back in the cluster ${step.downMs} ms after its SIGTERM`);
console.log(`   users per node now: ${JSON.stringify(spread(cluster, users))}`);
say(`messages: ${inSession.sent} sent, ${inSession.sent - inSession.lost.length} received, ${inSession.duplicates} of them twice (sent again after a session that could not be resumed)`);

say(`the six log out (</stream:stream>: nothing to resume, so no affinity is kept) and log in again`);
await Promise.all(users.map((u) => u.close()));
const later = await logInUsers();
console.log(`   users per node: ${JSON.stringify(spread(cluster, later))}: ${step.node} fills again`);
await sleep(1000); // offline messages come with the initial presence
const report = load.report(later);
for (const m of report.late) console.log(`   ${m.id} to ${m.to.jid} arrived now, from offline storage: it reached the server between ${m.to.jid}'s two sessions`);
say(`in all: ${report.sent} sent, ${report.sent - report.lost.length} received, ${report.lost.length} lost`);

say(`instance A's view (GET http://127.0.0.1:${a.admin}/nodes)`);
const view = (await (await fetch(`http://127.0.0.1:${a.admin}/nodes`)).json()) as { nodes: Array<{ id: string; state: string; connections: number }> };
for (const n of view.nodes) console.log(`   ${n.id}: ${n.state}, ${n.connections} forwarded connections`);

/** Logs everyone out and stops every process; on Ctrl-C (`interrupted`) the nodes are gone already, so the clients just drop. */
async function shutdown(interrupted: boolean): Promise<void> {
  if (interrupted) for (const c of [alice.socket?.socket, bob.socket?.socket, ...later]) c?.destroy();
  else await Promise.all([alice.stop().catch(() => {}), bob.stop().catch(() => {}), ...later.map((u) => u.close())]);
  for (const i of instances) i.child.kill("SIGTERM");
  await Promise.all(instances.map((i) => (i.child.exitCode === null ? once(i.child, "exit") : undefined)));
  await cluster.stop();
  await redis.stop();
}

if (keep) {
  say(`running until Ctrl-C: point an XMPP client at 127.0.0.1:${a.port} or 127.0.0.1:${b.port} as alice@${DOMAIN} / ${PASSWORD}`);
  process.once("SIGINT", () => void shutdown(true).then(() => process.exit(0)));
} else {
  await shutdown(false);
  say(report.lost.length === 0 ? "done: nothing was lost, and every process is stopped" : "done: every process is stopped");
  if (report.lost.length > 0) process.exitCode = 1;
}
