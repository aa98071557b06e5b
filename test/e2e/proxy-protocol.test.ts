import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { startHaproxy, type HaproxyRun } from "../support/haproxy.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { RawXmpp, STREAM_OPEN, plainAuth } from "../support/raw.js";
import { freePort, waitFor } from "../support/wait.js";

const PASSWORD = "correct horse";
const streamError = (text: string): string | undefined => /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(text)?.[1];

/**
 * Real HAProxy (Debian's) on both sides of the balancer: in front, sending
 * PROXY headers as an NLB does; behind, reading them as a node that supports
 * the protocol would, and logging the client address it was given. Clients
 * connect from distinct loopback addresses; HAProxy's own address is
 * 127.0.0.1 for all of them, so only the PROXY header can tell them apart.
 */
describe("PROXY protocol", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const haproxies: HaproxyRun[] = [];

  before(async () => {
    cluster = await startProsodyCluster({ count: 1, externalPort: 0, users: [["alice", PASSWORD], ["bob", PASSWORD]] });
  });
  after(async () => {
    await Promise.all(balancers.map((b) => b.close()));
    await Promise.all(haproxies.map((h) => h.stop()));
    await cluster?.stop();
  });

  /** HAProxy on a free port, sending `send` (send-proxy or send-proxy-v2) to the balancer's `port`. */
  const front = async (port: number, send: string): Promise<number> => {
    const listen = await freePort();
    haproxies.push(await startHaproxy(`listen front\n  bind 127.0.0.1:${listen}\n  server lb 127.0.0.1:${port} ${send}\n`, listen));
    return listen;
  };

  const login = async (port: number, from: string, user: string): Promise<RawXmpp> => {
    const c = await RawXmpp.connect(port, "127.0.0.1", { localAddress: from });
    await c.secureStream();
    c.send(plainAuth(user, PASSWORD));
    await c.until(/<success|see-other-host/);
    return c;
  };

  for (const send of ["send-proxy-v2", "send-proxy"]) {
    it(`uses the client address from HAProxy's ${send} in logs and in the redirect-loop memory`, async () => {
      const lines: string[] = [];
      const lb = await startBalancer({ mode: "redirect", proxyProtocol: true, saslMechanisms: ["PLAIN"], node: nodeFlags(cluster.nodes) }, lines);
      balancers.push(lb);
      const port = await front(lb.port, send);

      const first = await login(port, "127.0.0.77", "alice");
      assert.equal(streamError(first.received), "see-other-host");
      // The same client (address and JID) right back: forwarded instead of redirected again.
      const back = await login(port, "127.0.0.77", "alice");
      assert.match(back.received, /<success/);
      // Another address, same JID: a new client, redirected.
      const other = await login(port, "127.0.0.78", "alice");
      assert.equal(streamError(other.received), "see-other-host");
      for (const c of [first, back, other]) c.destroy();

      // The three decisions are logged with the addresses the clients connected from, not HAProxy's.
      const decisions = lines.map((l) => JSON.parse(l) as { client?: string; jid?: string; msg: string }).filter((l) => l.jid === "alice@lb.test");
      assert.deepEqual(
        decisions.map((d) => `${d.msg} ${d.client?.split(":")[0]}`),
        ["redirected 127.0.0.77", "the client came back right after a redirect: forwarding it instead 127.0.0.77", "forwarded 127.0.0.77", "redirected 127.0.0.78"],
      );
    });
  }

  it("reads the PROXY header before TLS on a direct-TLS listener", async () => {
    const lb = await startBalancer({ listen: "direct-tls://127.0.0.1:0,proxy", saslMechanisms: ["PLAIN"], node: nodeFlags(cluster.nodes) });
    balancers.push(lb);
    const port = await front(lb.port, "send-proxy-v2");
    const c = await RawXmpp.connect(port, "127.0.0.1", { directTls: true });
    c.send(STREAM_OPEN);
    await c.until(/<\/stream:features>/);
    c.send(plainAuth("alice", PASSWORD));
    await c.until(/<success/);
    c.destroy();
  });

  it("closes a connection that does not start with a PROXY header", async () => {
    const lb = await startBalancer({ proxyProtocol: true, node: nodeFlags(cluster.nodes) });
    balancers.push(lb);
    const c = await RawXmpp.connect(lb.port);
    c.send(STREAM_OPEN);
    await c.closed;
    assert.equal(c.received, "", "nothing is said to whatever is not the front");
  });

  it("sends nodes the client's address (--backend-proxy-protocol v2), to a node behind HAProxy's accept-proxy", async () => {
    const [node] = cluster.nodes;
    const nodeFront = await freePort("127.0.0.1");
    const nodeSide = await startHaproxy(
      `frontend node\n  bind 127.0.0.1:${nodeFront} accept-proxy\n  log-format "client=%ci:%cp"\n  default_backend prosody\n\nbackend prosody\n  server n1 ${node!.internal.host}:${node!.internal.port}\n`,
      nodeFront,
    );
    haproxies.push(nodeSide);
    // The balancer reads PROXY from its own front and writes PROXY to the node: the address goes through both.
    const lb = await startBalancer({ proxyProtocol: true, backendProxyProtocol: "v2", saslMechanisms: ["PLAIN"], node: [`id=n1,internal=127.0.0.1:${nodeFront}`] });
    balancers.push(lb);
    const port = await front(lb.port, "send-proxy-v2");
    const c = await login(port, "127.0.0.79", "bob");
    assert.match(c.received, /<success/);
    c.destroy();
    await waitFor("HAProxy to log the forwarded connection", () => /client=127\.0\.0\.79:\d+/.test(nodeSide.log()), 5000);
  });
});
