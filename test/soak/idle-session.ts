/**
 * A forwarded session survives idleness: two resources of one account log in
 * through the balancer (forward mode, two Prosody nodes), stay silent for N
 * seconds (no XEP-0198 acks, no pings), then one messages the other.
 * Run: NODE_EXTRA_CA_CERTS=examples/tls/ca.pem node --import tsx test/soak/idle-session.ts [seconds=240]
 */
import { xml } from "@xmpp/client";
import { login } from "../support/clients.js";
import { startBalancer } from "../support/balancer.js";
import { startProsodyCluster } from "../support/prosody.js";

const idleSeconds = Number(process.argv[2] ?? 240);
const cluster = await startProsodyCluster({ count: 2, externalPort: 0, users: [["idle", "pw"]] });
const lb = await startBalancer({ mode: "forward", node: cluster.nodes.map((n) => `id=${n.id},internal=${n.internal.host}:${n.internal.port}`) });
const [a, b] = await Promise.all(["a", "b"].map((resource) => login({ port: lb.port, username: "idle", password: "pw", resource })));
const dropped: string[] = [];
for (const [name, c] of [["a", a!], ["b", b!]] as const) {
  c.streamManagement.requestAckInterval = 0; // truly idle: no <r/> every 30 s
  c.on("disconnect", () => dropped.push(name));
}
console.log(`logged in; idle for ${idleSeconds} s`);
await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
const got = new Promise<string | null>((resolve) => b!.on("stanza", (s) => s.is("message") && resolve(s.getChildText("body"))));
await a!.send(xml("message", { to: "idle@lb.test/b", type: "chat" }, xml("body", {}, "after idle")));
const body = await Promise.race([got, new Promise<string>((resolve) => setTimeout(() => resolve("(nothing within 5 s)"), 5000))]);
console.log(`dropped during idle: ${dropped.length === 0 ? "none" : dropped.join(", ")}; received: ${body}`);
const ok = dropped.length === 0 && body === "after idle";
await Promise.all([a!.stop(), b!.stop()]);
await lb.close();
await cluster.stop();
process.exitCode = ok ? 0 : 1;
