import assert from "node:assert/strict";
import { createHmac, timingSafeEqual, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { modernFixture } from "../support/modern-fixture.js";
import { nodeOf } from "../support/clients.js";
import { nodeFlags, startEjabberdCluster, type EjabberdCluster } from "../support/ejabberd.js";
import { modernLogin, tokenLogin, type FastToken, type ModernSession } from "../support/modern-client.js";
import { DOMAIN, RawXmpp, STREAM_OPEN } from "../support/raw.js";
import { scramLogin, tlsServerEndPoint } from "../support/scram-plus.js";

const PASSWORD = "modern times";
const USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter"];
const CERT = new X509Certificate(readFileSync(new URL("../../examples/tls/server.pem", import.meta.url)));
/** What ejabberd 24.12's mod_auth_fast lists, less the token mechanisms bound to a TLS session (which ends at the balancer). */
const FAST_THROUGH_BALANCER = ["HT-SHA-256-NONE", "HT-SHA-256-ENDP"];

/** A raw FAST token login (XEP-0484 HT-SHA-256-NONE or -ENDP) over SASL2 with Bind2, as xmpp.js 0.14 cannot do -ENDP. */
interface TokenVerdict {
  ok: boolean;
  condition?: string;
  text?: string;
  /** The server's HT "Responder" proof in <additional-data/> was right. */
  serverVerified?: boolean;
  /** The node the stream ended up on (its disco#info identity name). */
  node?: string;
  /** The FAST mechanisms offered to this stream. */
  fast: string[];
}

async function rawTokenLogin(o: { port: number; username: string; token: FastToken; userAgentId: string; mechanism: "HT-SHA-256-NONE" | "HT-SHA-256-ENDP" }): Promise<TokenVerdict> {
  const raw = await RawXmpp.connect(o.port);
  try {
    raw.send(STREAM_OPEN);
    await raw.until(/<\/stream:features>/);
    await raw.starttls();
    raw.send(STREAM_OPEN.replace("version='1.0'", `version='1.0' from='${o.username}@${DOMAIN}'`));
    const features = await raw.until(/<\/stream:features>/);
    const fastList = /<fast\b[^>]*urn:xmpp:fast:0[^>]*>([\s\S]*?)<\/fast>/.exec(features)?.[1] ?? "";
    const fast = [...fastList.matchAll(/<mechanism>([^<]*)<\/mechanism>/g)].map((m) => m[1]!);
    const cb = o.mechanism === "HT-SHA-256-ENDP" ? tlsServerEndPoint(raw.tlsSocket!.getPeerX509Certificate()!) : Buffer.alloc(0);
    const hmac = (label: string): Buffer => createHmac("sha256", o.token.token).update(Buffer.concat([Buffer.from(label), cb])).digest();
    const initial = Buffer.concat([Buffer.from(`${o.username}\0`), hmac("Initiator")]).toString("base64");
    raw.send(
      `<authenticate xmlns='urn:xmpp:sasl:2' mechanism='${o.mechanism}'><initial-response>${initial}</initial-response>` +
        `<user-agent id='${o.userAgentId}'><software>xmpp-lb tests</software></user-agent>` +
        `<fast xmlns='urn:xmpp:fast:0'/><bind xmlns='urn:xmpp:bind:0'><tag>raw</tag></bind></authenticate>`,
    );
    const [, name, body = ""] = await raw.match(/<(success|failure)\b[^>]*?(?:\/>|>([\s\S]*?)<\/\1>)/, features.length, 10_000);
    if (name === "failure") {
      const condition = /<([a-z-]+)(?:\s[^>]*)?\/?>/.exec(body.replace(/<text\b[\s\S]*?<\/text>/, ""))?.[1];
      const text = /<text\b[^>]*>([\s\S]*?)<\/text>/.exec(body)?.[1];
      return { ok: false, fast, ...(condition === undefined ? {} : { condition }), ...(text === undefined ? {} : { text }) };
    }
    const data = Buffer.from(/<additional-data>([^<]*)<\/additional-data>/.exec(body)?.[1] ?? "", "base64");
    const responder = hmac("Responder");
    const serverVerified = data.length === responder.length && timingSafeEqual(data, responder);
    const seen = raw.received.length;
    raw.send(`<iq type='get' id='disco1' to='${DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`);
    const [identity] = await raw.match(/<identity\b[^>]*\bcategory=['"]server['"][^>]*>/, seen);
    const node = /\bname=['"]([^'"]+)['"]/.exec(identity)?.[1];
    return { ok: true, fast, serverVerified, ...(node === undefined ? {} : { node }) };
  } finally {
    raw.destroy();
  }
}

/**
 * Modern logins (XEP-0388 SASL2, XEP-0386 Bind2, XEP-0198 inline, XEP-0484
 * FAST, XEP-0440 channel binding) through the balancer, in front of two
 * independent ejabberd 24.12 nodes (own Mnesia each: each keeps its own FAST
 * tokens), with mod_auth_fast, allow_unencrypted_sasl2 on the balancer-facing
 * listeners (c2s and WebSocket) and -PLUS enabled. Their certfile is the
 * development certificate the balancer serves too, from which ejabberd
 * computes tls-server-end-point: with --backend-tls, `--channel-binding auto`
 * finds the nodes presenting the client's certificate, and -PLUS and
 * HT-SHA-256-ENDP hold end to end.
 */
describe("modern logins through the balancer (ejabberd 24.12)", () => {
  let cluster: EjabberdCluster;
  const fixture = modernFixture(() => nodeFlags(cluster.nodes), PASSWORD);
  const { balancer, keep, tokenTest, fill } = fixture;

  before(async () => {
    cluster = await startEjabberdCluster({
      count: 2,
      network: { internal: "127.0.53", external: "127.0.54" },
      modern: true,
      channelBinding: true,
      websocket: true,
      users: USERS.map((u) => [u, PASSWORD]),
    });
  });
  after(async () => {
    await fixture.close();
    await cluster?.stop();
  });


  it("the nodes' certfile is the certificate the balancer serves: tls-server-end-point can hold", () => {
    const certfile = readFileSync(cluster.nodes[0]!.configFile, "utf8").match(/^certfiles: \["([^"]+)"\]/m)![1]!;
    const served = new X509Certificate(readFileSync(certfile));
    assert.equal(served.fingerprint256, CERT.fingerprint256);
  });

  for (const transport of ["tcp", "websocket"] as const) {
    it(`${transport}, phase login: SASL2 with Bind2, SM and a FAST token; the token's login reaches the token's node`, async () => {
      const lb = await balancer({ ...tokenTest(), listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], backendTls: true });
      const service = transport === "tcp" ? `xmpp://127.0.0.1:${lb.ports[0]}` : `ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket`;
      const user = transport === "tcp" ? "alice" : "bob";
      const first = await modernLogin({ service, username: user, password: PASSWORD });
      const { offered, attempts } = first.report;
      assert.ok(offered.sasl2?.includes("SCRAM-SHA-1"), `SASL2 offered: ${JSON.stringify(offered)}`);
      assert.ok(offered.bind2 !== null, "Bind2 offered");
      assert.equal(offered.smInline, true, "SM resumption inline");
      if (transport === "tcp") {
        // TLS to the balancer, whose certificate the nodes bind to: tls-server-end-point holds, so -ENDP and -PLUS are offered.
        assert.deepEqual(offered.fast, FAST_THROUGH_BALANCER, "FAST with the tokens that hold through the balancer (no -EXPR, -UNIQ)");
        assert.deepEqual(offered.channelBindings, ["tls-server-end-point"]);
        assert.ok(offered.sasl2!.includes("SCRAM-SHA-1-PLUS") && offered.sasl1.includes("SCRAM-SHA-1-PLUS"));
      } else {
        // ws:// to the balancer: no TLS, nothing to bind to.
        assert.deepEqual(offered.fast, ["HT-SHA-256-NONE"], "no channel binding on plaintext: HT-SHA-256-NONE only");
        assert.deepEqual(offered.channelBindings, []);
        assert.ok(!offered.sasl2!.some((m) => m.endsWith("-PLUS")));
      }
      assert.equal(attempts[0]!.profile, "sasl2");
      assert.equal(attempts[0]!.verdict, "success");
      assert.equal(first.report.bound, true, "Bind2 bound the resource inline");
      assert.equal(first.sm.enabled, true);
      assert.ok(first.token !== null, "a FAST token came back");
      const tokenNode = await nodeOf(first.client);
      await first.client.stop();

      // The token's node is now full: without the balancer's memory the login would go to the other node, which never saw the token.
      await fill(service, tokenNode, USERS.filter((u) => u !== "alice" && u !== "bob").slice(transport === "tcp" ? 0 : 7));
      const again = keep(await tokenLogin({ service, username: user, password: "not the password", token: first.token!, userAgentId: first.userAgentId }));
      assert.deepEqual(
        again.report.attempts.map((a) => [a.mechanism, a.verdict]),
        [["HT-SHA-256-NONE", "success"]],
        "the token alone logged in",
      );
      assert.equal(await nodeOf(again.client), tokenNode);

      if (transport === "tcp") {
        // ejabberd binds a token to no mechanism: the same token with -ENDP, the binding the client computed from the balancer's certificate.
        const endp = await rawTokenLogin({ port: lb.port, username: user, token: first.token!, userAgentId: first.userAgentId, mechanism: "HT-SHA-256-ENDP" });
        assert.deepEqual(endp.fast, FAST_THROUGH_BALANCER);
        assert.equal(endp.ok, true, `HT-SHA-256-ENDP: ${endp.condition} ${endp.text}`);
        assert.equal(endp.serverVerified, true, "the node proved it knows the token and saw the same binding");
        assert.equal(endp.node, tokenNode);
      }
    });
  }

  it("tcp, phase open: the node's own SASL2 and FAST pass, less what cannot hold through the balancer", async () => {
    const lb = await balancer({ ...tokenTest(), listen: "127.0.0.1:0", phase: "open", backendTls: true });
    const service = `xmpp://127.0.0.1:${lb.port}`;
    const s = keep(await modernLogin({ service, username: "carol", password: PASSWORD }));
    const { offered } = s.report;
    assert.ok(offered.sasl2 !== null && offered.bind2 !== null && offered.smInline);
    assert.deepEqual(offered.fast, FAST_THROUGH_BALANCER, "-EXPR and -UNIQ bind to the balancer's TLS session with the node: not shown");
    assert.deepEqual(offered.channelBindings, ["tls-server-end-point"], "tls-exporter and tls-unique would bind to the wrong TLS session");
    assert.ok(offered.sasl1.includes("SCRAM-SHA-1-PLUS") && offered.sasl2.includes("SCRAM-SHA-1-PLUS"), "the node binds to the certificate the client got: -PLUS holds");
    assert.equal(s.report.attempts.at(-1)!.verdict, "success");
    assert.ok(s.token !== null);
    const tokenNode = await nodeOf(s.client);
    await s.client.stop();

    // The node's features as a raw client sees them: no <starttls/> on the stream already under TLS.
    const raw = await RawXmpp.connect(lb.port);
    try {
      await raw.secureStream(STREAM_OPEN.replace("version='1.0'", `version='1.0' from='dave@${DOMAIN}'`));
      const features = raw.received;
      assert.match(features, /urn:xmpp:sasl:2/, "the node's own features (SASL2)");
      assert.doesNotMatch(features, /<starttls\b/);
      assert.doesNotMatch(features, /tls-exporter|tls-unique|HT-SHA-256-EXPR|HT-SHA-256-UNIQ/);
    } finally {
      raw.destroy();
    }

    await fill(service, tokenNode, ["ivan", "judy", "mallory", "oscar", "peggy"]);
    const again = keep(await tokenLogin({ service, username: "carol", password: "wrong", token: s.token!, userAgentId: s.userAgentId }));
    assert.deepEqual(again.report.attempts.map((a) => [a.mechanism, a.verdict]), [["HT-SHA-256-NONE", "success"]]);
    assert.equal(await nodeOf(again.client), tokenNode, "the open phase keeps the user on its node");
    const endp = await rawTokenLogin({ port: lb.port, username: "carol", token: s.token!, userAgentId: s.userAgentId, mechanism: "HT-SHA-256-ENDP" });
    assert.deepEqual([endp.ok, endp.serverVerified, endp.node], [true, true, tokenNode], `HT-SHA-256-ENDP: ${endp.condition} ${endp.text}`);
    const plus = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "carol", password: PASSWORD, mechanism: "SCRAM-SHA-256-PLUS", profile: "sasl2", tls: "starttls" });
    assert.deepEqual([plus.ok, plus.serverVerified], [true, true], `SCRAM-SHA-256-PLUS in phase open: ${plus.condition} ${plus.text}`);
  });

  it("websocket, phase open: the node's own SASL2, Bind2 and FAST reach the browser's client; its token login reaches the token's node", async () => {
    const lb = await balancer({ ...tokenTest(), listen: "ws://127.0.0.1:0/xmpp-websocket", phase: "open" });
    const service = `ws://127.0.0.1:${lb.port}/xmpp-websocket`;
    const s = await modernLogin({ service, username: "grace", password: PASSWORD });
    const { offered } = s.report;
    assert.ok(offered.sasl2 !== null && offered.bind2 !== null && offered.smInline, JSON.stringify(offered));
    assert.deepEqual(offered.fast, ["HT-SHA-256-NONE"], "the node's WebSocket stream is plaintext: nothing to bind");
    assert.ok(s.token !== null);
    const tokenNode = await nodeOf(s.client);
    await s.client.stop();
    await fill(service, tokenNode, ["trent", "victor", "walter", "heidi", "frank"]);
    const again = keep(await tokenLogin({ service, username: "grace", password: "wrong", token: s.token!, userAgentId: s.userAgentId }));
    assert.deepEqual(again.report.attempts.map((a) => [a.mechanism, a.verdict]), [["HT-SHA-256-NONE", "success"]]);
    assert.equal(await nodeOf(again.client), tokenNode);
  });

  for (const profile of ["sasl1", "sasl2"] as const) {
    for (const mechanism of ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"] as const) {
      it(`${profile}: ${mechanism} with tls-server-end-point holds end to end`, async () => {
        const lb = await balancer({ listen: "127.0.0.1:0", backendTls: true, saslMechanisms: ["SCRAM-SHA-1", "SCRAM-SHA-256"] });
        const verdict = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "erin", password: PASSWORD, mechanism, profile, tls: "starttls" });
        const offered = profile === "sasl1" ? verdict.offered.sasl1 : (verdict.offered.sasl2 ?? []);
        assert.ok(offered.includes(mechanism), `offered: ${offered.join(" ")}`);
        assert.ok(offered.indexOf(mechanism) < offered.indexOf(mechanism.replace("-PLUS", "")), "-PLUS first, beside its mechanism");
        assert.deepEqual(verdict.offered.channelBindings, ["tls-server-end-point"]);
        assert.equal(verdict.ok, true, `${verdict.condition} ${verdict.text}`);
        assert.equal(verdict.serverVerified, true, "the node proved it saw the same binding");
        if (profile === "sasl2") assert.equal(verdict.authorizationIdentifier, `erin@${DOMAIN}`);
        // The node checks the binding: a wrong one is refused.
        const wrong = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "erin", password: PASSWORD, mechanism, profile, tls: "starttls", bindingData: Buffer.alloc(32) });
        assert.equal(wrong.ok, false);
      });
    }
  }

  it("--channel-binding none: no -PLUS, no -ENDP; a gs2 'y' client is refused by the node, as the warning says; an 'n' client logs in", async () => {
    const lines: string[] = [];
    const lb = await balancer({ listen: "127.0.0.1:0", backendTls: true, channelBinding: "none" }, lines);
    const verdict = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "frank", password: PASSWORD, mechanism: "SCRAM-SHA-1", profile: "sasl2", tls: "starttls", gs2Header: "y,," });
    assert.ok(!verdict.offered.sasl1.some((m) => m.endsWith("-PLUS")) && !(verdict.offered.sasl2 ?? []).some((m) => m.endsWith("-PLUS")));
    assert.deepEqual(verdict.offered.channelBindings, []);
    assert.deepEqual([verdict.ok, verdict.condition, verdict.text], [false, "not-authorized", "Invalid channel binding"], "ejabberd refuses gs2 y as a downgrade: why the warning exists");
    assert.ok(
      lines.some((l) => l.includes('"level":40') && l.includes("cannot offer it to clients") && l.includes("--channel-binding none")),
      "the operator is told once, with what to change",
    );
    const s = keep(await modernLogin({ service: `xmpp://127.0.0.1:${lb.port}`, username: "frank", password: PASSWORD }));
    assert.deepEqual(s.report.offered.fast, ["HT-SHA-256-NONE"], "-ENDP needs the binding the balancer does not offer");
    assert.deepEqual(s.report.offered.channelBindings, []);
    assert.equal(s.report.attempts[0]!.profile, "sasl2");
    assert.equal(s.report.attempts.at(-1)!.verdict, "success", "xmpp.js sends gs2 'n'");
  });

  it("nodes with -PLUS disabled, over --backend-tls: ejabberd still lists its bindings and refuses gs2 'y'; the operator is warned", async () => {
    // The README's older advice (disable -PLUS): ejabberd 24.12 lists XEP-0440 bindings on TLS all the same, and its SCRAM calls 'y' a downgrade.
    const plain = await startEjabberdCluster({ count: 1, network: { internal: "127.0.53", external: "127.0.54" }, modern: true, users: [["grace", PASSWORD]] });
    const lines: string[] = [];
    try {
      const lb = await balancer({ node: nodeFlags(plain.nodes), listen: "127.0.0.1:0", backendTls: true }, lines);
      const y = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "grace", password: PASSWORD, mechanism: "SCRAM-SHA-1", profile: "sasl2", tls: "starttls", gs2Header: "y,," });
      assert.ok(!y.offered.sasl1.some((m) => m.endsWith("-PLUS")) && y.offered.channelBindings.length === 0);
      assert.deepEqual([y.ok, y.condition, y.text], [false, "not-authorized", "Invalid channel binding"], "ejabberd 24.12 refuses 'y' on TLS with -PLUS disabled");
      assert.ok(
        lines.some((l) => l.includes('"level":40') && l.includes("downgrade")),
        `a node that refuses gs2 'y' (it lists channel bindings on the balancer's TLS stream) should be warned about like one that offers -PLUS; warnings: ${lines.filter((l) => l.includes('"level":40')).join("\n")}`,
      );
    } finally {
      await plain.stop();
    }
  });
});
