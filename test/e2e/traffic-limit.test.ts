import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { xml, type Client } from "@xmpp/client";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { login, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";

const PASSWORD = "traffic pw";
const CHUNK = "x".repeat(8 * 1024);

const limited = async (lb: TestBalancer, action: string): Promise<number> =>
  Number(new RegExp(`action="${action}"} (\\d+)`).exec(await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_traffic_limited_total"))?.[1] ?? 0);

/** Sends `count` messages of 8 KiB to the client's own account (the node delivers them back to it). */
async function flood(xmpp: Client, count: number): Promise<void> {
  const to = `${xmpp.jid!.local}@${xmpp.jid!.domain}`;
  for (let i = 0; i < count; i++) await xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, CHUNK)));
}

/** Resolves when the client's connection goes (events.once would reject on the socket's EPIPE on the way). */
const disconnected = (xmpp: Client): Promise<void> => new Promise((resolve) => xmpp.once("disconnect", () => resolve()));

const ping = (xmpp: Client): Promise<unknown> => xmpp.iqCaller.request(xml("iq", { type: "get", to: "lb.test" }, xml("ping", { xmlns: "urn:xmpp:ping" })), 30_000);

/** --traffic-limit on forwarded sessions, against a real Prosody node. */
describe("traffic limits", () => {
  let cluster: ProsodyCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const balancer = async (trafficLimit: string): Promise<TestBalancer> => {
    const lb = await startBalancer({ listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], mode: "forward", node: nodeFlags(cluster.nodes), trafficLimit });
    balancers.push(lb);
    return lb;
  };
  const connect = async (lb: TestBalancer, username: string): Promise<Client> => {
    const c = await login({ port: lb.port, username, password: PASSWORD });
    clients.push(c);
    return c;
  };

  const connectWebSocket = async (lb: TestBalancer, username: string): Promise<Client> => {
    const c = await login({ port: 0, websocket: `ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket`, username, password: PASSWORD, resource: "ws" });
    clients.push(c);
    return c;
  };

  before(async () => {
    cluster = await startProsodyCluster({ count: 1, externalPort: 0, websocket: true, users: ["heavy", "light"].map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    await Promise.all(balancers.map((b) => b.close()));
    await cluster?.stop();
  });

  // One behaviour, every transport: the byte meter is the relay's, whichever framing carries the bytes.
  for (const transport of ["tcp", "websocket"] as const) {
    // Bounded: a relay that does not meter never cuts the client, and the test must fail rather than wait for ever.
    it(`disconnects a client over its bytes per minute, and leaves one under it alone (${transport})`, { timeout: 60_000 }, async () => {
      const lb = await balancer("bin:64k:0:disc");
      const heavy = transport === "tcp" ? await connect(lb, "heavy") : await connectWebSocket(lb, "heavy");
      const light = await connect(lb, "light");
      const gone = disconnected(heavy);
      await flood(heavy, 10).catch(() => {});
      await gone;
      assert.equal(await limited(lb, "disconnect"), 1);
      await ping(light);
      assert.equal(light.status, "online");
    });
  }

  it("closes a connection past its lifetime allowance even when the action is throttle", async () => {
    const lb = await balancer("bin:0:32k:throttle");
    const heavy = await connect(lb, "heavy");
    const gone = disconnected(heavy);
    await flood(heavy, 5).catch(() => {});
    await gone;
    assert.equal(await limited(lb, "disconnect"), 1);
  });

  it("throttle slows a sender down to its rate and loses nothing", async () => {
    // 2 KiB a second after a burst of 120 KiB: 16 messages of 8 KiB and the
    // login's own bytes are about 9 KiB over, so about 4.5 s of pauses.
    const lb = await balancer("bin:120k:0:throttle");
    const heavy = await connect(lb, "heavy");
    const received: string[] = [];
    heavy.on("stanza", (s) => {
      if (s.is("message") && s.attrs.type === "chat") received.push(s.getChildText("body") ?? "");
    });
    await heavy.send(xml("presence")); // available: messages to the account reach this resource
    await ping(heavy);
    const started = performance.now();
    await flood(heavy, 16);
    await ping(heavy);
    const elapsed = performance.now() - started;
    assert.ok(elapsed > 3000, `the node had everything after ${Math.round(elapsed)} ms: not throttled`);
    assert.equal(heavy.status, "online");
    assert.ok((await limited(lb, "throttle")) >= 1);
    assert.equal(await limited(lb, "disconnect"), 0);
    // Every message reached the node and came back in full, before the ping's answer.
    assert.equal(received.length, 16);
    assert.ok(received.every((b) => b === CHUNK), "a message came back changed");
  });
});
