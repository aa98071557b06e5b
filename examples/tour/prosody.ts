/**
 * A tour for a machine with no XMPP cluster: starts two local Prosody nodes
 * (Debian package `prosody`), starts xmpp-lb in front of them with the real
 * command line, and logs a real client (@xmpp/client) in through it, once
 * forwarded and once redirected. `npm run tour -- --keep` leaves everything
 * running until Ctrl-C, so any XMPP client can try it (user alice@localhost,
 * password "tour-password", server 127.0.0.1, port printed below; trust
 * examples/tls/ca.pem or accept the self-signed certificate). It borrows the
 * test suite's Prosody launcher and client helpers.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { xml, type Client } from "@xmpp/client";
import { login, nodeOf } from "../../test/support/clients.js";
import { nodeFlags, startProsodyCluster } from "../../test/support/prosody.js";
import { modernLogin, tokenLogin } from "../../test/support/modern-client.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOMAIN = "localhost";
const USER = "alice";
const PASSWORD = "tour-password";
const keep = process.argv.includes("--keep");
const say = (line: string): void => void process.stdout.write(`\n== ${line}\n`);

say("starting two Prosody nodes (internal 127.0.1.N, external 127.0.2.N:5222)");
// Modern logins (SASL2, Bind2, FAST tokens) from prosody-modules; each node keeps its own tokens.
const cluster = await startProsodyCluster({ count: 2, domain: DOMAIN, users: [[USER, PASSWORD]], modern: true });
for (const n of cluster.nodes) console.log(`   ${n.id}: internal ${n.internal.host}:${n.internal.port}, external ${n.external.host}:${n.external.port}`);

const args = [
  "--listen", "127.0.0.1:0",
  "--listen", "127.0.0.1:0,mode=redirect,phase=open",
  "--domain", DOMAIN,
  "--tls-cert", "examples/tls/server.pem",
  "--tls-key", "examples/tls/server.key",
  "--metrics", "127.0.0.1:0",
  ...nodeFlags(cluster.nodes).flatMap((node) => ["--node", node]),
];
say(`starting the balancer: xmpp-lb ${args.join(" ")}`);
const balancer = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
const ports: number[] = [];
let admin = 0;
// The balancer logs JSON lines; the tour reads the bound ports from them and echoes each decision.
const lines = createInterface({ input: balancer.stdout! });
lines.on("line", (line) => {
  const entry = JSON.parse(line) as { msg: string; address?: { port: number }; jid?: string; node?: string; to?: string; via?: string };
  if (entry.msg === "listening") ports.push(entry.address!.port);
  else if (entry.msg.startsWith("admin endpoint")) admin = entry.address!.port;
  else if (entry.msg === "forwarded") console.log(`   [xmpp-lb] forwarded ${entry.jid} to ${entry.node} (chosen by ${entry.via})`);
  else if (entry.msg === "redirected") console.log(`   [xmpp-lb] redirected ${entry.jid} to ${entry.node} at ${entry.to}`);
});
balancer.once("exit", (code) => code !== 0 && code !== null && console.error(`the balancer exited (${code})`));
while (ports.length < 2 || admin === 0) {
  if (balancer.exitCode !== null) throw new Error("the balancer did not start");
  await new Promise((resolve) => setTimeout(resolve, 50));
}
console.log(`   forward listener 127.0.0.1:${ports[0]}, redirect listener 127.0.0.1:${ports[1]}, admin http://127.0.0.1:${admin}/nodes`);

const connect = (port: number, announceJid: boolean): Promise<Client> => login({ port, domain: DOMAIN, username: USER, password: PASSWORD, announceJid });

say("logging alice in through the forward listener: SASL2 with Bind2, asking for a FAST token");
const first = await modernLogin({ service: `xmpp://127.0.0.1:${ports[0]}`, domain: DOMAIN, username: USER, password: PASSWORD });
const tokenNode = await nodeOf(first.client);
console.log(`   offered SASL2 ${first.report.offered.sasl2?.join(" ")}, FAST ${first.report.offered.fast?.join(" ")}; bound ${first.jid} on node ${tokenNode}; token until ${first.token?.expiry}`);
await first.client.stop();

say("logging alice in again with only that token (no password), through the balancer");
const forwarded = (await tokenLogin({ service: `xmpp://127.0.0.1:${ports[0]}`, domain: DOMAIN, username: USER, password: "not the password", token: first.token!, userAgentId: first.userAgentId })).client;
console.log(`   bound ${forwarded.jid} on node ${await nodeOf(forwarded)} (the token's node: ${tokenNode}), connected to ${forwarded.socket?.socket?.remoteAddress}:${forwarded.socket?.socket?.remotePort} (the balancer)`);

say("logging alice in again through the redirect listener");
const redirected = await connect(ports[1]!, true);
console.log(`   bound ${redirected.jid} on node ${await nodeOf(redirected)}, connected to ${redirected.socket?.socket?.remoteAddress}:${redirected.socket?.socket?.remotePort} (the node's external address)`);

say("a message from one resource to the other, through the balancer and the node");
const got = new Promise<string | null>((resolve) => forwarded.on("stanza", (s) => s.is("message") && resolve(s.getChildText("body"))));
await redirected.send(xml("message", { to: forwarded.jid!.toString(), type: "chat" }, xml("body", {}, "hello from the other resource")));
console.log(`   received: ${await got}`);

say(`the balancer's view (GET http://127.0.0.1:${admin}/nodes)`);
console.log(await (await fetch(`http://127.0.0.1:${admin}/nodes`)).text());

async function shutdown(): Promise<void> {
  await Promise.all([forwarded.stop().catch(() => {}), redirected.stop().catch(() => {})]);
  balancer.kill("SIGTERM");
  await once(balancer, "exit");
  await cluster.stop();
}

if (keep) {
  say(`running until Ctrl-C: point an XMPP client at 127.0.0.1:${ports[0]} as ${USER}@${DOMAIN} / ${PASSWORD}`);
  process.once("SIGINT", () => void shutdown().then(() => process.exit(0)));
} else {
  await shutdown();
  say("done: every process is stopped");
}
