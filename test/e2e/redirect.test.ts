import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { login, nodeOf, remoteOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { RawXmpp, plainAuth } from "../support/raw.js";

const PASSWORD = "battery staple";

/**
 * Redirect mode against real Prosody nodes, each with an internal address
 * (127.0.1.N, probed by the balancer) and an external one (127.0.2.N:5222):
 * clients must end up on the external one.
 */
describe("redirect mode", () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  const nodes = (): string[] => nodeFlags(cluster.nodes);
  const clients: Client[] = [];

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, users: ["frank", "grace", "heidi", "ivy"].map((u) => [u, PASSWORD]) });
    lb = await startBalancer({ mode: "redirect", node: nodes() });
  });
  after(async () => {
    await stopAll(clients);
    await lb?.close();
    await cluster?.stop();
  });

  it("sends see-other-host with the node's external address after the SASL <auth/>", async () => {
    const c = await RawXmpp.connect(lb.port);
    await c.secureStream();
    c.send(plainAuth("frank", PASSWORD));
    await c.closed;
    const target = /<see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>([^<]+)<\/see-other-host>/.exec(c.received)?.[1];
    const chosen = lb.balancer.nodes.table.get((await lb.balancer.store.lookup("frank@lb.test"))!)!;
    assert.equal(target, `${chosen.external.host}:${chosen.external.port}`);
    assert.match(c.received, /<\/stream:error><\/stream:stream>$/);
  });

  it("forwards a client that comes straight back after a redirect (a redirect loop), and counts it", async () => {
    const loginOnce = async (): Promise<string> => {
      const c = await RawXmpp.connect(lb.port);
      await c.secureStream();
      c.send(plainAuth("ivy", PASSWORD));
      const text = await c.until(/see-other-host|<success/);
      c.destroy();
      return text;
    };
    assert.match(await loginOnce(), /<see-other-host/);
    assert.match(await loginOnce(), /<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/, "the second time it is forwarded and logged in");
    const loops = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_redirect_loops_total");
    assert.match(loops, /xmpp_lb_redirect_loops_total 1/);
  });

  it("keeps redirecting real users through a burst of made-up logins at maxconn=, which only forwarded sessions fill", async () => {
    // A redirect listener and a forward one, nodes capped at 2 sessions each.
    const capped = await startBalancer({ listen: ["127.0.0.1:0,mode=redirect", "127.0.0.1:0,mode=forward"], node: nodes().map((n) => `${n},maxconn=2`) });
    const sockets: RawXmpp[] = [];
    /** Logs `user` in on the listener at `port` from `from`: what came back, up to the stream's end (a redirect) or the SASL verdict. */
    const loginAs = async (port: number, user: string, password: string, from = "127.0.0.1"): Promise<string> => {
      const c = await RawXmpp.connect(port, "127.0.0.1", { localAddress: from });
      sockets.push(c);
      await c.secureStream();
      c.send(plainAuth(user, password));
      return c.until(/<\/stream:stream>|<success |<\/failure>/);
    };
    const [redirectPort, forwardPort] = capped.ports as [number, number];
    try {
      // No password is checked before a redirect: anyone can make up as many logins as they like, from many addresses.
      const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => loginAs(redirectPort, `made-up-${i}`, "anything", `127.0.0.${31 + (i % 6)}`)));
      for (const text of burst) assert.match(text, /<see-other-host /);
      const loads = await capped.balancer.store.loads();
      assert.deepEqual(cluster.nodes.map((n) => loads.get(n.id)?.redirects), [6, 6], "least-conn still spreads redirects");
      const real = await loginAs(redirectPort, "frank", PASSWORD);
      assert.match(real, /<see-other-host /, "a real user is still redirected");
      assert.doesNotMatch(real, /temporary-auth-failure/);

      // Forwarded sessions the nodes accepted do fill them: four real ones, then no node takes a new user.
      for (const user of ["frank", "grace", "heidi", "ivy"]) assert.match(await loginAs(forwardPort, user, PASSWORD), /<success /, user);
      assert.match(await loginAs(redirectPort, "made-up-late", "anything"), /<temporary-auth-failure\/>/);
    } finally {
      for (const c of sockets) c.destroy();
      await capped.close();
    }
  });

  // xmpp.js 0.14 follows see-other-host only before SASL (a redirect after <auth/> leaves its first
  // SASL handler listening, which answers the node's challenge), so it is redirected in phase open.
  it("@xmpp/client announcing its JID follows the redirect (phase open) and binds on the node's external address", async () => {
    const open = await startBalancer({ mode: "redirect", phase: "open", node: nodes() });
    try {
      const xmpp = await login({ port: open.port, username: "grace", password: PASSWORD, announceJid: true });
      clients.push(xmpp);
      const nodeId = await nodeOf(xmpp);
      const node = cluster.nodes.find((n) => n.id === nodeId)!;
      assert.deepEqual(remoteOf(xmpp), { host: node.external.host, port: node.external.port });
      assert.equal(await open.balancer.store.lookup("grace@lb.test"), nodeId);
      // A second resource is sent to the same node.
      const second = await login({ port: open.port, username: "grace", password: PASSWORD, resource: "two", announceJid: true });
      clients.push(second);
      assert.equal(await nodeOf(second), nodeId);
    } finally {
      await open.close();
    }
  });

  it("redirects at the stream header in phase open when it carries from=", async () => {
    const open = await startBalancer({ mode: "redirect", phase: "open", node: nodes() });
    try {
      const c = await RawXmpp.connect(open.port);
      await c.secureStream(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test' from='heidi@lb.test' version='1.0'>`).catch(() => undefined);
      await c.closed;
      assert.match(c.received, /^<\?xml version='1.0'\?><stream:stream [^>]*><stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>127\.0\.2\.\d:5222<\/see-other-host>/);
      assert.doesNotMatch(c.received, /stream:features/, "no features: the decision came at the header");
    } finally {
      await open.close();
    }
  });
});
