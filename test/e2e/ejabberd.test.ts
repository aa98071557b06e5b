import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { xml, type Client } from "@xmpp/client";
import { nodeFlags, startEjabberdCluster, type EjabberdCluster, type EjabberdNode } from "../support/ejabberd.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { RawXmpp, STREAM_OPEN, plainAuth } from "../support/raw.js";
import { waitFor } from "../support/wait.js";

const PASSWORD = "correct horse";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const SEE_OTHER_HOST = /<see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>([^<]+)<\/see-other-host>/;
const POLICY_VIOLATION = /<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/;
const NO_NODE = /<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure\/><text xml:lang='en'>no cluster node is available/;

interface LogLine {
  msg: string;
  level: number;
  node?: string;
  code?: string;
  err?: string;
  client?: string;
  jid?: string;
}
const parse = (lines: string[]): LogLine[] => lines.map((l) => JSON.parse(l) as LogLine);

/** SCRAM (RFC 5802) by hand: @xmpp/client 0.14 only has SCRAM-SHA-1. Resolves once the node's <success/> carries the right server signature. */
async function scramAuth(c: RawXmpp, mechanism: "SCRAM-SHA-256" | "SCRAM-SHA-512", user: string, password: string): Promise<void> {
  const hash = mechanism === "SCRAM-SHA-256" ? "sha256" : "sha512";
  const hmac = (key: Buffer, text: string): Buffer => createHmac(hash, key).update(text).digest();
  const b64 = (s: string | Buffer): string => Buffer.from(s).toString("base64");
  const clientNonce = randomBytes(18).toString("base64");
  const clientFirstBare = `n=${user},r=${clientNonce}`;
  c.send(`<auth xmlns='${NS_SASL}' mechanism='${mechanism}'>${b64(`n,,${clientFirstBare}`)}</auth>`);
  const challenge = /<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>([^<]+)<\/challenge>/.exec(await c.until(/<challenge[^>]*>[^<]+<\/challenge>/))![1]!;
  const serverFirst = Buffer.from(challenge, "base64").toString();
  const attrs = new Map(serverFirst.split(",").map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
  const nonce = attrs.get("r")!;
  assert.ok(nonce.startsWith(clientNonce), `server nonce ${nonce} does not extend ours`);
  const salted = pbkdf2Sync(password, Buffer.from(attrs.get("s")!, "base64"), Number(attrs.get("i")), hash === "sha256" ? 32 : 64, hash);
  const clientFinalBare = `c=${b64("n,,")},r=${nonce}`;
  const authMessage = `${clientFirstBare},${serverFirst},${clientFinalBare}`;
  const clientKey = hmac(salted, "Client Key");
  const signature = hmac(createHash(hash).update(clientKey).digest(), authMessage);
  const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
  c.send(`<response xmlns='${NS_SASL}'>${b64(`${clientFinalBare},p=${proof.toString("base64")}`)}</response>`);
  const text = await c.until(/<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[^<]*<\/success>|<failure/);
  const success = /<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>([^<]*)<\/success>/.exec(text);
  assert.ok(success, `${mechanism} login failed: ${text.slice(-300)}`);
  const verifier = Buffer.from(Buffer.from(success[1]!, "base64").toString().replace(/^v=/, ""), "base64");
  assert.ok(timingSafeEqual(verifier, hmac(hmac(salted, "Server Key"), authMessage)), "the server signature does not match: not the node that holds the password");
}

/** After <success/>: restart the stream and bind `resource`; resolves with the full JID. */
async function bindRaw(c: RawXmpp, resource: string): Promise<string> {
  c.send(STREAM_OPEN);
  await c.until(/<success[\s\S]*<\/stream:features>/);
  c.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  return /<jid>([^<]+)<\/jid>/.exec(await c.until(/<jid>[^<]+<\/jid>/))![1]!;
}

/**
 * Debian's ejabberd 23.01 as the cluster (test/support/ejabberd.ts): two
 * nodes, each with a balancer-facing c2s listener (127.0.3.N), a client-facing
 * one (127.0.4.N) and one with `use_proxy_protocol: true`, mod_fail2ban at
 * c2s_max_auth_failures: 3. Clients that must be told apart by address
 * connect from their own loopback address (127.0.0.9x).
 */
describe("ejabberd nodes", () => {
  let cluster: EjabberdCluster;
  let exempting: EjabberdCluster;
  const balancers: TestBalancer[] = [];
  const clients: Client[] = [];
  const raws: RawXmpp[] = [];

  const balancer = async (input: Parameters<typeof startBalancer>[0], lines?: string[]): Promise<TestBalancer> => {
    const lb = await startBalancer(input, lines);
    balancers.push(lb);
    return lb;
  };
  const raw = async (port: number, from?: string): Promise<RawXmpp> => {
    const c = await RawXmpp.connect(port, "127.0.0.1", from === undefined ? {} : { localAddress: from });
    raws.push(c);
    return c;
  };
  /** A PLAIN login through the balancer: resolves with what came back once the node (or balancer) answered. */
  const plainLogin = async (port: number, user: string, password: string, from?: string): Promise<RawXmpp> => {
    const c = await raw(port, from);
    await c.secureStream();
    c.send(plainAuth(user, password));
    await c.until(/<success|<failure|<stream:error/, 8000);
    return c;
  };
  /** The nodes the balancer forwarded a JID's logins to, in order (from its log). */
  const forwardedTo = (lines: string[], jid: string): string[] => parse(lines).filter((l) => l.msg === "forwarded" && l.jid === jid).map((l) => l.node!);
  /** ejabberd writes its log a moment later. */
  const waitForLog = (node: EjabberdNode, pattern: RegExp): Promise<void> => waitFor(`${node.id}'s log to match ${pattern}`, () => pattern.test(node.log()), 5000);

  before(async () => {
    [cluster, exempting] = await Promise.all([
      startEjabberdCluster({
        count: 2,
        proxyListener: true,
        maxAuthFailures: 3,
        users: ["alice", "bob", "carol", "dave", "frank", "peggy", "mallory", "trent"].map((u) => [u, PASSWORD]),
      }),
      // One more node, where the balancer's address is exempt from mod_fail2ban (README, "Setting up the nodes").
      startEjabberdCluster({ count: 1, maxAuthFailures: 3, fail2banExempt: ["127.0.0.1/32"], users: [["trent", PASSWORD]] }),
    ]);
  });
  // Each test's clients and balancers go with it: no stray probes or sessions in the next test.
  afterEach(async () => {
    await stopAll(clients.splice(0));
    for (const c of raws.splice(0)) c.destroy();
    await Promise.all(balancers.splice(0).map((b) => b.close()));
  });
  after(async () => {
    await Promise.all([cluster?.stop(), exempting?.stop()]);
  });

  describe("forward mode", () => {
    it("binds @xmpp/client through the balancer with SCRAM-SHA-1 and with PLAIN", async () => {
      const scramLb = await balancer({ mode: "forward", node: nodeFlags(cluster.nodes), saslMechanisms: ["SCRAM-SHA-1"] });
      const scram = await login({ port: scramLb.port, username: "alice", password: PASSWORD });
      clients.push(scram);
      assert.equal(scram.jid?.toString().split("/")[0], "alice@lb.test");
      const plainLb = await balancer({ mode: "forward", node: nodeFlags(cluster.nodes), saslMechanisms: ["PLAIN"] });
      const plain = await login({ port: plainLb.port, username: "bob", password: PASSWORD });
      clients.push(plain);
      assert.equal(plain.jid?.toString().split("/")[0], "bob@lb.test");
      // mod_disco's `name` tells the node; its log, the mechanism.
      for (const [c, mechanism, user] of [[scram, "SCRAM-SHA-1", "alice"], [plain, "PLAIN", "bob"]] as const) {
        const id = await nodeOf(c);
        const node = cluster.nodes.find((n) => n.id === id);
        assert.ok(node, "on no ejabberd node");
        await waitForLog(node, new RegExp(`Accepted c2s ${mechanism} authentication for ${user}@lb\\.test`));
      }
    });

    it("logs in with SCRAM-SHA-256 and SCRAM-SHA-512, which ejabberd offers and the balancer passes on when configured", async () => {
      // ANONYMOUS as a marker: lb.test does not offer it, so once it is gone, the probes have told the balancer what every node offers.
      const lb = await balancer({ mode: "forward", node: nodeFlags(cluster.nodes), saslMechanisms: ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "ANONYMOUS"] });
      await waitFor("the probes to narrow the SASL mechanisms", () => !lb.balancer.saslMechanisms("lb.test").includes("ANONYMOUS"));
      // Unlike Prosody 0.12, ejabberd (plain password storage) offers every SCRAM variant, SCRAM-SHA-512 included.
      assert.deepEqual(lb.balancer.saslMechanisms("lb.test"), ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
      for (const mechanism of ["SCRAM-SHA-256", "SCRAM-SHA-512"] as const) {
        const c = await raw(lb.port);
        await c.secureStream();
        assert.match(c.received, new RegExp(`<mechanism>${mechanism}</mechanism>`));
        await scramAuth(c, mechanism, "carol", PASSWORD);
        assert.equal(await bindRaw(c, mechanism), `carol@lb.test/${mechanism}`);
        c.destroy();
      }
    });

    it("puts both resources of an account on one node, and carries a message between them", async () => {
      const lb = await balancer({ mode: "forward", node: nodeFlags(cluster.nodes) });
      const phone = await login({ port: lb.port, username: "dave", password: PASSWORD, resource: "phone" });
      clients.push(phone);
      const laptop = await login({ port: lb.port, username: "dave", password: PASSWORD, resource: "laptop" });
      clients.push(laptop);
      const node = await nodeOf(phone);
      assert.equal(await nodeOf(laptop), node);
      assert.equal(await lb.balancer.store.lookup("dave@lb.test"), node);

      const received = new Promise<string | null>((resolve) =>
        laptop.on("stanza", (s: import("@xmpp/xml").Element) => s.is("message") && resolve(s.getChildText("body"))),
      );
      await phone.send(xml("message", { to: "dave@lb.test/laptop", type: "chat" }, xml("body", {}, "ping from phone")));
      assert.equal(await received, "ping from phone");
    });
  });

  describe("redirect mode", () => {
    it("sends see-other-host with the node's external address, where the client can log in", async () => {
      const lb = await balancer({ mode: "redirect", node: nodeFlags(cluster.nodes) });
      const c = await raw(lb.port);
      await c.secureStream();
      c.send(plainAuth("frank", PASSWORD));
      await c.closed;
      const target = SEE_OTHER_HOST.exec(c.received)?.[1];
      const id = await lb.balancer.store.lookup("frank@lb.test");
      const node = cluster.nodes.find((n) => n.id === id);
      assert.ok(node, `no directory entry for frank: ${c.received}`);
      assert.equal(target, `${node.external.host}:${node.external.port}`);
      assert.match(target!, /^127\.0\.4\.\d:\d+$/);

      // The external listener is ejabberd's own, TLS required: the redirected login works there.
      const [host, port] = target!.split(":") as [string, string];
      const direct = await RawXmpp.connect(Number(port), host);
      raws.push(direct);
      direct.send(STREAM_OPEN);
      assert.match(await direct.until(/<\/stream:features>/), /<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required\/><\/starttls>/);
      await direct.starttls();
      direct.send(STREAM_OPEN);
      await direct.until(/<\/stream:features>/);
      direct.send(plainAuth("frank", PASSWORD));
      await direct.until(/<success/);
      assert.equal(await bindRaw(direct, "redirected"), "frank@lb.test/redirected");
      direct.destroy();
    });
  });

  describe("PROXY protocol to the nodes (--backend-proxy-protocol v2, use_proxy_protocol: true)", () => {
    it("logs in, and ejabberd sees the client's own address, not the balancer's", async () => {
      const lb = await balancer({ mode: "forward", backendProxyProtocol: "v2", saslMechanisms: ["PLAIN"], node: nodeFlags(cluster.nodes, { via: "proxy" }) });
      const c = await plainLogin(lb.port, "peggy", PASSWORD, "127.0.0.90");
      assert.match(c.received, /<success/);
      assert.equal(await bindRaw(c, "proxied"), "peggy@lb.test/proxied");
      const id = await lb.balancer.store.lookup("peggy@lb.test");
      const node = cluster.nodes.find((n) => n.id === id)!;
      // ejabberd's log: the PROXY header's source, then the login from it.
      await waitForLog(node, /Accepted c2s PLAIN authentication for peggy@lb\.test by \w+ backend from 127\.0\.0\.90\b/);
      assert.match(node.log(), /Accepted proxied connection 127\.0\.0\.90:\d+ -> /);
      // And ejabberd reports it: the session's IP (ejabberdctl user_sessions_info).
      const sessions = await node.ctl(["user_sessions_info", "peggy", "lb.test"]);
      assert.match(sessions, /\b127\.0\.0\.90\b/, sessions);
      assert.doesNotMatch(sessions, /\b127\.0\.0\.1\b/, sessions);
      c.destroy();
    });

    it(
      // ejabberd 23.01 reads a v2 header's address block with gen_tcp:recv(Socket, Len), and Len 0 (an empty LOCAL header)
      // means 'whatever has arrived': it would swallow the probe's stream header. Probes name their own connection instead.
      "keeps a use_proxy_protocol node up through its health probes",
      async () => {
        const lb = await balancer({ mode: "forward", backendProxyProtocol: "v2", healthTimeout: 1, node: nodeFlags(cluster.nodes.slice(0, 1), { via: "proxy" }) });
        const states: string[] = [];
        lb.balancer.nodes.subscribe((t) => states.push(t.get("n1")?.health ?? "gone"));
        await new Promise((r) => setTimeout(r, 1500));
        assert.deepEqual(states, [], "the node's health changed");
        assert.equal(lb.balancer.nodes.table.get("n1")?.health, "up");
      },
    );
  });

  describe("mod_fail2ban (c2s_max_auth_failures: 3)", () => {
    it("without PROXY protocol, bans the balancer's address: the node refuses its next dial (XMPP_LB_NODE_REFUSED), the dial does not mark it down, and the login goes to the other node", async () => {
      const lines: string[] = [];
      // No probes after the first: what the dial path does, alone.
      const lb = await balancer({ mode: "forward", strategy: "hash", saslMechanisms: ["PLAIN"], healthInterval: 600, node: nodeFlags(cluster.nodes) }, lines);
      try {
        // Three wrong passwords, each from its own client address: to ejabberd they all come from the balancer.
        for (const [i, from] of ["127.0.0.91", "127.0.0.92", "127.0.0.93"].entries()) {
          const c = await plainLogin(lb.port, "mallory", "wrong", from);
          if (i < 2) assert.match(c.received, /<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized\/>/);
          // The third failure is answered with the ban itself, instead of <failure/>.
          else assert.match(c.received, POLICY_VIOLATION);
          c.destroy();
        }
        // Failed logins leave no directory entry: hashing sent all three to the same node.
        const [victimId, ...rest] = forwardedTo(lines, "mallory@lb.test");
        assert.deepEqual(rest, [victimId, victimId]);
        const victim = cluster.nodes.find((n) => n.id === victimId)!;
        const other = cluster.nodes.find((n) => n !== victim)!;
        await waitForLog(victim, /Too many \(3\) failed authentications from this IP address \(127\.0\.0\.1\)/);

        // Another client, right password: the JID's node refuses the balancer's stream at once...
        const c = await plainLogin(lb.port, "mallory", PASSWORD, "127.0.0.94");
        assert.match(c.received, /<success/);
        const refused = parse(lines).filter((l) => l.msg === "node dial failed");
        assert.equal(refused.length, 1, JSON.stringify(refused));
        assert.equal(refused[0]!.node, victim.id);
        assert.equal(refused[0]!.code, "XMPP_LB_NODE_REFUSED");
        assert.match(refused[0]!.err!, /<policy-violation\/>/);
        // ...so the client is forwarded to the other node,
        assert.ok(parse(lines).some((l) => l.msg === "forwarded" && l.jid === "mallory@lb.test" && l.node === other.id));
        assert.equal(await bindRaw(c, "after-ban"), "mallory@lb.test/after-ban");
        c.destroy();
        // and the refusing node is neither suspect nor down: it is alive, it refuses this balancer.
        assert.equal(lb.balancer.nodes.table.get(victim.id)?.health, "up");
        const metrics = await lb.balancer.metrics.registry.getSingleMetricAsString("xmpp_lb_node_dial_failures_total");
        assert.match(metrics, new RegExp(`node="${victim.id}"} 1`));
      } finally {
        await Promise.all(cluster.nodes.map((n) => n.ctl(["unban_ip", "127.0.0.1/32"])));
      }
    });

    it("without PROXY protocol and one node, a banned balancer has no node for anybody: the client gets temporary-auth-failure", async () => {
      const lines: string[] = [];
      const [node] = cluster.nodes;
      const lb = await balancer({ mode: "forward", saslMechanisms: ["PLAIN"], healthInterval: 600, dialTimeout: 1, node: nodeFlags([node!]) }, lines);
      try {
        for (let i = 0; i < 3; i++) (await plainLogin(lb.port, "trent", "wrong", `127.0.0.${91 + i}`)).destroy();
        const c = await plainLogin(lb.port, "alice", PASSWORD, "127.0.0.94");
        // Refused (policy-violation) on every retry within --dial-timeout, then: no node.
        assert.match(c.received, NO_NODE);
        c.destroy();
        const refused = parse(lines).filter((l) => l.msg === "node dial failed");
        assert.ok(refused.length >= 2 && refused.every((l) => l.code === "XMPP_LB_NODE_REFUSED"), JSON.stringify(refused));
        assert.equal(lb.balancer.nodes.table.get("n1")?.health, "up");
      } finally {
        await node!.ctl(["unban_ip", "127.0.0.1/32"]);
      }
    });

    it(
      // A probe answered with a stream error (<policy-violation/>) says the node refuses the balancer, not that it is dead.
      "without PROXY protocol, health probes keep a node that bans the balancer up",
      async () => {
        const [node] = cluster.nodes;
        const lb = await balancer({ mode: "forward", saslMechanisms: ["PLAIN"], node: nodeFlags([node!]) });
        const states: string[] = [];
        lb.balancer.nodes.subscribe((t) => states.push(t.get("n1")?.health ?? "gone"));
        try {
          for (let i = 0; i < 3; i++) (await plainLogin(lb.port, "trent", "wrong")).destroy();
          await new Promise((r) => setTimeout(r, 2500)); // more than --health-fall (2) probes at 1 s
          assert.deepEqual(states, [], "the node's health changed");
        } finally {
          await node!.ctl(["unban_ip", "127.0.0.1/32"]);
        }
      },
    );

    it("with PROXY protocol, the failures count against the client's own address: it is refused, other clients are not", async () => {
      const lines: string[] = [];
      const [node] = cluster.nodes;
      const lb = await balancer({ mode: "forward", backendProxyProtocol: "v2", saslMechanisms: ["PLAIN"], dialTimeout: 1, node: nodeFlags([node!], { via: "proxy" }) }, lines);
      try {
        for (let i = 0; i < 3; i++) {
          const c = await plainLogin(lb.port, "trent", "wrong", "127.0.0.95");
          assert.match(c.received, i < 2 ? /<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized\/>/ : POLICY_VIOLATION);
          c.destroy();
        }
        await waitForLog(node!, /Too many \(3\) failed authentications from this IP address \(127\.0\.0\.95\)/);
        // Another address, even for the same account: logged in.
        const other = await plainLogin(lb.port, "trent", PASSWORD, "127.0.0.96");
        assert.match(other.received, /<success/);
        other.destroy();
        // The banned address, right password: the node refuses it, on every retry.
        const banned = await plainLogin(lb.port, "trent", PASSWORD, "127.0.0.95");
        assert.match(banned.received, NO_NODE);
        banned.destroy();
        const refused = parse(lines).filter((l) => l.msg === "node dial failed");
        assert.ok(refused.length >= 1, "no refused dial logged");
        for (const l of refused) {
          assert.equal(l.code, "XMPP_LB_NODE_REFUSED");
          assert.match(l.client ?? "", /^127\.0\.0\.95:/);
        }
        // The balancer's own address was never banned: a login without PROXY header still works.
        const direct = await plainLogin((await balancer({ mode: "forward", saslMechanisms: ["PLAIN"], node: nodeFlags([node!]) })).port, "alice", PASSWORD);
        assert.match(direct.received, /<success/);
        direct.destroy();
      } finally {
        await node!.ctl(["unban_ip", "127.0.0.95/32"]);
      }
    });

    it("without PROXY protocol, never bans the balancer's address when an acl exempts it (mod_fail2ban's access)", async () => {
      const lb = await balancer({ mode: "forward", saslMechanisms: ["PLAIN"], node: nodeFlags(exempting.nodes) });
      for (let i = 0; i < 4; i++) {
        const c = await plainLogin(lb.port, "trent", "wrong", `127.0.0.${91 + i}`);
        assert.match(c.received, /<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized\/>/);
        c.destroy();
      }
      const c = await plainLogin(lb.port, "trent", PASSWORD);
      assert.match(c.received, /<success/);
      c.destroy();
      assert.doesNotMatch(exempting.nodes[0]!.log(), /blacklisted IP/);
      assert.equal(lb.balancer.nodes.table.get("n1")?.health, "up");
    });
  });
});
