import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { client, type Client } from "@xmpp/client";
import { login, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { RawXmpp, STREAM_OPEN } from "../support/raw.js";

const PASSWORD = "correct horse";
const ANON = "anon.lb.test";

/** One listener, two domains with different SASL mechanisms on real Prosody nodes. */
describe("SASL mechanisms per domain", () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  const clients: Client[] = [];

  before(async () => {
    cluster = await startProsodyCluster({
      count: 2,
      externalPort: 0,
      users: [["alice", PASSWORD]],
      // A second host that logs anyone in anonymously (Prosody's own "anonymous" authentication).
      extraConfig: `VirtualHost "${ANON}"\n  authentication = "anonymous"\n`,
    });
    lb = await startBalancer({ domain: ["lb.test", ANON], node: nodeFlags(cluster.nodes), saslMechanisms: ["PLAIN", "SCRAM-SHA-1", "ANONYMOUS"] });
    // Until the first probes, the configured list is offered: wait until both domains are learnt.
    for (let i = 0; i < 100 && (lb.balancer.saslMechanisms(ANON).includes("PLAIN") || lb.balancer.saslMechanisms("lb.test").includes("ANONYMOUS")); i++) await new Promise((r) => setTimeout(r, 50));
  });
  after(async () => {
    await stopAll(clients);
    await lb?.close();
    await cluster?.stop();
  });

  it("offers each domain what its nodes offer on it", async () => {
    assert.deepEqual(lb.balancer.saslMechanisms(ANON), ["ANONYMOUS"]);
    assert.deepEqual(lb.balancer.saslMechanisms("lb.test"), ["PLAIN", "SCRAM-SHA-1"]);
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream(STREAM_OPEN.replace("to='lb.test'", `to='${ANON}'`));
    assert.match(c.received, /<mechanism>ANONYMOUS<\/mechanism><\/mechanisms>/);
    assert.doesNotMatch(c.received, /PLAIN/);
    c.destroy();
  });

  it("logs an anonymous client in on the anonymous domain, and a password client on the other", async () => {
    const anonymous = client({ service: `xmpp://127.0.0.1:${lb.port}`, domain: ANON });
    anonymous.reconnect.stop();
    anonymous.on("error", () => {});
    await anonymous.start();
    clients.push(anonymous);
    assert.equal(anonymous.jid?.domain, ANON);
    const alice = await login({ port: lb.port, username: "alice", password: PASSWORD });
    clients.push(alice);
    assert.equal(`${alice.jid?.local}@${alice.jid?.domain}`, "alice@lb.test");
  });
});
