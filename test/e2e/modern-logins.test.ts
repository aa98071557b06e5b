import assert from "node:assert/strict";
import { X509Certificate, randomUUID } from "node:crypto";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { once } from "node:events";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { modernFixture } from "../support/modern-fixture.js";
import { nodeOf } from "../support/clients.js";
import { RawXmpp, STREAM_OPEN } from "../support/raw.js";
import { modernLogin, tokenLogin, type ModernSession } from "../support/modern-client.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { scramLogin, tlsServerEndPoint } from "../support/scram-plus.js";

const PASSWORD = "modern times";
const USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy"];
const CERT = new X509Certificate(readFileSync(new URL("../../examples/tls/server.pem", import.meta.url)));

/** A certificate of the nodes' own, which the balancer (serving examples/tls/server.pem) does not present. */
async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, "node.pem");
  const key = path.join(dir, "node.key");
  await promisify(execFile)("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=lb.test", "-addext", "subjectAltName=DNS:lb.test", "-keyout", key, "-out", cert]);
  return { cert, key };
}

/** STARTTLS to the balancer with the given TLS options (any certificate accepted), then the features it offers on the new stream. */
async function featuresAfterTls(port: number, options: tls.ConnectionOptions): Promise<{ keyType: "EC" | "RSA"; features: string }> {
  const socket = net.connect(port, "127.0.0.1");
  const read = (s: net.Socket, until: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      let text = "";
      const onData = (chunk: Buffer): void => {
        text += chunk.toString();
        if (!until.test(text)) return;
        s.off("data", onData);
        resolve(text);
      };
      s.on("data", onData).once("error", reject);
    });
  try {
    socket.write(STREAM_OPEN);
    await read(socket, /<\/stream:features>/);
    socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await read(socket, /<proceed/);
    const secure = tls.connect({ socket, servername: "lb.test", rejectUnauthorized: false, ...options });
    await once(secure, "secureConnect");
    const keyType = secure.getPeerX509Certificate()?.publicKey.asymmetricKeyType === "rsa" ? "RSA" : "EC";
    secure.write(STREAM_OPEN);
    const features = await read(secure, /<\/stream:features>/);
    secure.destroy();
    return { keyType, features };
  } finally {
    socket.destroy();
  }
}

/**
 * Modern logins (XEP-0388 SASL2, XEP-0386 Bind2, XEP-0198 inline, XEP-0484
 * FAST, XEP-0440 channel binding) through the balancer, in front of two
 * Prosody 13 nodes with separate storage: each keeps its own FAST tokens.
 * The nodes bind tls-server-end-point to the certificate the balancer serves
 * (the same development certificate on both), told by its hash.
 */
describe("modern logins through the balancer (Prosody 13)", () => {
  let cluster: ProsodyCluster;
  const fixture = modernFixture(() => nodeFlags(cluster.nodes), PASSWORD);
  const { balancer, keep, tokenTest, fill } = fixture;

  before(async () => {
    cluster = await startProsodyCluster({
      count: 2,
      externalPort: 0,
      websocket: true,
      network: { internal: "127.0.51", external: "127.0.52" },
      modern: true,
      channelBinding: true,
      tlsServerEndPointHash: tlsServerEndPoint(CERT).toString("hex"),
      users: USERS.map((u) => [u, PASSWORD]),
    });
  });
  after(async () => {
    await fixture.close();
    await cluster?.stop();
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
      assert.deepEqual(offered.fast, ["HT-SHA-256-NONE"], "FAST with only the token that holds through the balancer (no -EXPR, -UNIQ)");
      assert.ok(!offered.channelBindings.includes("tls-exporter") && !offered.channelBindings.includes("tls-unique"));
      assert.equal(attempts[0]!.profile, "sasl2");
      assert.equal(attempts[0]!.verdict, "success");
      assert.equal(first.report.bound, true, "Bind2 bound the resource inline");
      assert.equal(first.sm.enabled, true);
      assert.ok(first.token !== null, "a FAST token came back");
      const tokenNode = await nodeOf(first.client);
      await first.client.stop();

      // The token's node is now full: without the balancer's memory the login would go to the other node, which never saw the token.
      await fill(service, tokenNode, USERS.filter((u) => u !== "alice" && u !== "bob").slice(transport === "tcp" ? 0 : 5));
      const again = keep(await tokenLogin({ service, username: user, password: "not the password", token: first.token!, userAgentId: first.userAgentId }));
      assert.deepEqual(
        again.report.attempts.map((a) => [a.mechanism, a.verdict]),
        [["HT-SHA-256-NONE", "success"]],
        "the token alone logged in",
      );
      assert.equal(await nodeOf(again.client), tokenNode);
    });
  }

  it("tcp, phase open: the node's own SASL2 and FAST pass, less what cannot hold through the balancer", async () => {
    const lb = await balancer({ ...tokenTest(), listen: "127.0.0.1:0", phase: "open", backendTls: true });
    const s = keep(await modernLogin({ service: `xmpp://127.0.0.1:${lb.port}`, username: "carol", password: PASSWORD }));
    const { offered } = s.report;
    assert.ok(offered.sasl2 !== null && offered.bind2 !== null && offered.smInline);
    assert.deepEqual(offered.fast, ["HT-SHA-256-NONE"], "-EXPR and -UNIQ bind to the balancer's TLS session with the node: not shown");
    assert.deepEqual(offered.channelBindings, ["tls-server-end-point"], "tls-exporter would bind to the wrong TLS session");
    assert.ok(offered.sasl1.includes("SCRAM-SHA-1-PLUS"), "the node binds to the certificate the client got: -PLUS holds");
    assert.ok(s.token !== null);
    const tokenNode = await nodeOf(s.client);
    await s.client.stop();
    // Phase open cannot tell a token login from a password one at the header: the token's node is preferred for both.
    await fill(`xmpp://127.0.0.1:${lb.port}`, tokenNode, ["ivan", "judy", "mallory", "oscar", "peggy"]);
    const again = keep(await tokenLogin({ service: `xmpp://127.0.0.1:${lb.port}`, username: "carol", password: "wrong", token: s.token!, userAgentId: s.userAgentId }));
    assert.equal(await nodeOf(again.client), tokenNode, "the open phase keeps the user on its node");
  });

  it("websocket, phase open: the node's own SASL2, Bind2 and FAST reach the browser's client; its token login reaches the token's node", async () => {
    const lb = await balancer({ ...tokenTest(), listen: "ws://127.0.0.1:0/xmpp-websocket", phase: "open" });
    const service = `ws://127.0.0.1:${lb.port}/xmpp-websocket`;
    const s = await modernLogin({ service, username: "grace", password: PASSWORD });
    const { offered } = s.report;
    assert.ok(offered.sasl2 !== null && offered.bind2 !== null && offered.smInline, JSON.stringify(offered));
    assert.deepEqual(offered.fast, ["HT-SHA-256-NONE"]);
    assert.ok(s.token !== null);
    const tokenNode = await nodeOf(s.client);
    await s.client.stop();
    await fill(service, tokenNode, ["ivan", "judy", "mallory", "oscar", "peggy"]);
    const again = keep(await tokenLogin({ service, username: "grace", password: "wrong", token: s.token!, userAgentId: s.userAgentId }));
    assert.deepEqual(again.report.attempts.map((a) => a.mechanism), ["HT-SHA-256-NONE"]);
    assert.equal(await nodeOf(again.client), tokenNode);
  });

  it("resumes a broken session inline in SASL2 (XEP-0198 in <authenticate/>) on the node that holds it, full or not", async () => {
    const lb = await balancer({ node: nodeFlags(cluster.nodes).map((flag) => `${flag},maxconn=1`), listen: "127.0.0.1:0", backendTls: true });
    const service = `xmpp://127.0.0.1:${lb.port}`;
    const first = await modernLogin({ service, username: "oscar", password: PASSWORD });
    assert.ok(first.sm.enabled && first.sm.id !== "", "SM enabled inline, resumable");
    const node = await nodeOf(first.client);
    // The connection breaks (no </stream:stream>): the node keeps the session for resumption, the directory keeps the user there.
    (first.client as unknown as { socket: { socket: import("node:net").Socket } }).socket.socket.destroy();
    await new Promise((r) => setTimeout(r, 300));
    await fill(service, node, ["peggy", "ivan", "judy", "mallory"]);
    const raw = await RawXmpp.connect(lb.port);
    await raw.secureStream();
    const plain = Buffer.from(`\0oscar\0${PASSWORD}`).toString("base64");
    raw.send(`<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>${plain}</initial-response><user-agent id='${first.userAgentId}'/><resume xmlns='urn:xmpp:sm:3' previd='${first.sm.id}' h='0'/></authenticate>`);
    const text = await raw.until(/<\/success>|<failure/);
    assert.match(text, /<success xmlns='urn:xmpp:sasl:2'>/);
    // Prosody writes attributes in no fixed order.
    const resumed = /<resumed\b[^>]*>/.exec(text)?.[0] ?? "";
    assert.match(resumed, /xmlns='urn:xmpp:sm:3'/, `the node holding the session resumed it: ${text}`);
    assert.match(resumed, new RegExp(`previd='${first.sm.id}'`));
    raw.destroy();
  });

  it("redirect mode: a SASL2 <authenticate/> is enough to send the client to its node, where it logs in over SASL2", async () => {
    const lb = await balancer({ listen: "127.0.0.1:0", mode: "redirect" });
    const raw = await RawXmpp.connect(lb.port);
    await raw.secureStream();
    assert.match(raw.received, /<authentication xmlns='urn:xmpp:sasl:2'>/);
    raw.send(`<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>${Buffer.from(`\0judy\0${PASSWORD}`).toString("base64")}</initial-response><user-agent id='${randomUUID()}'/></authenticate>`);
    const [, host, port] = await raw.match(/<see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>([\d.]+):(\d+)<\/see-other-host>/);
    const node = cluster.nodes.find((n) => n.external.host === host && n.external.port === Number(port));
    assert.ok(node !== undefined, `redirected to a node's external address: ${host}:${port}`);
    raw.destroy();
    // xmpp.js follows see-other-host, but its SASL2 exchange with the balancer stays subscribed and answers the
    // node's challenge too (a second, stale <response/>): so a fresh client goes where the redirect said.
    const s = keep(await modernLogin({ service: `xmpp://${host}:${port}`, username: "judy", password: PASSWORD }));
    assert.equal(await nodeOf(s.client), node.id);
    assert.equal(s.report.attempts.at(-1)!.profile, "sasl2");
  });

  it("tcp, phase open without --backend-tls: no <starttls/> is relayed to a client already on TLS, and no -PLUS", async () => {
    const lb = await balancer({ listen: "127.0.0.1:0", phase: "open" });
    const raw = await RawXmpp.connect(lb.port);
    await raw.secureStream(STREAM_OPEN.replace("to='lb.test'", "to='lb.test' from='dave@lb.test'"));
    assert.match(raw.received, /<mechanisms/, "the node's own features");
    assert.doesNotMatch(raw.received, /<starttls/, "the node offers STARTTLS on its plaintext stream: not to a client on TLS");
    raw.destroy();
    const s = keep(await modernLogin({ service: `xmpp://127.0.0.1:${lb.port}`, username: "dave", password: PASSWORD }));
    assert.equal(s.report.tls !== null, true, "the client is on TLS");
    assert.ok(!s.report.offered.sasl1.some((m) => m.endsWith("-PLUS")));
    assert.deepEqual(s.report.offered.channelBindings, []);
    assert.equal(s.report.attempts.at(-1)!.verdict, "success");
  });

  for (const profile of ["sasl1", "sasl2"] as const) {
    for (const mechanism of ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"] as const) {
      it(`${profile}: ${mechanism} with tls-server-end-point holds end to end`, async () => {
        // Prosody keeps one SCRAM hash per account: SCRAM-SHA-256 needs nodes that store SHA-256.
        const sha256 = mechanism === "SCRAM-SHA-256-PLUS";
        const nodes = sha256
          ? await startProsodyCluster({ count: 1, externalPort: 0, network: { internal: "127.0.55", external: "127.0.56" }, passwordHash: "SHA-256", channelBinding: true, modern: true, tlsServerEndPointHash: tlsServerEndPoint(CERT).toString("hex"), users: [["erin", PASSWORD]] })
          : cluster;
        try {
          const lb = await balancer({ node: nodeFlags(nodes.nodes), listen: "127.0.0.1:0", backendTls: true, saslMechanisms: ["SCRAM-SHA-1", "SCRAM-SHA-256"] });
          const verdict = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "erin", password: PASSWORD, mechanism, profile, tls: "starttls" });
          const offered = profile === "sasl1" ? verdict.offered.sasl1 : (verdict.offered.sasl2 ?? []);
          assert.ok(offered.includes(mechanism), `offered: ${offered.join(" ")}`);
          assert.ok(offered.indexOf(mechanism) < offered.indexOf(mechanism.replace("-PLUS", "")), "-PLUS first, beside its mechanism");
          assert.deepEqual(verdict.offered.channelBindings, ["tls-server-end-point"]);
          assert.equal(verdict.ok, true, `${verdict.condition} ${verdict.text}`);
          assert.equal(verdict.serverVerified, true, "the node proved it saw the same binding");
        } finally {
          if (sha256) await nodes.stop();
        }
      });
    }
  }

  it("offers no -PLUS where the nodes present another certificate than the client got, and the client still logs in; --channel-binding tls-server-end-point asserts it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-othercert-"));
    const other = await startProsodyCluster({ count: 1, externalPort: 0, network: { internal: "127.0.55", external: "127.0.56" }, channelBinding: true, modern: true, tlsServerEndPointHash: tlsServerEndPoint(CERT).toString("hex"), certificate: await selfSigned(dir), users: [["heidi", PASSWORD]] });
    try {
      const lines: string[] = [];
      const auto = await balancer({ node: nodeFlags(other.nodes), listen: "127.0.0.1:0", backendTls: true }, lines);
      const s = await modernLogin({ service: `xmpp://127.0.0.1:${auto.port}`, username: "heidi", password: PASSWORD });
      await s.client.stop();
      assert.ok(!s.report.offered.sasl1.some((m) => m.endsWith("-PLUS")) && !(s.report.offered.sasl2 ?? []).some((m) => m.endsWith("-PLUS")), "no -PLUS");
      assert.deepEqual(s.report.offered.channelBindings, []);
      assert.equal(s.report.attempts.at(-1)!.verdict, "success", "logged in without binding");
      assert.ok(lines.some((l) => l.includes('"level":40') && l.includes("cannot offer it to clients") && l.includes("certificate")), "the operator is told what to change");
      // The nodes are told the balancer's certificate (tls_server_end_point_hash): asserting it makes -PLUS hold.
      const asserted = await balancer({ node: nodeFlags(other.nodes), listen: "127.0.0.1:0", backendTls: true, channelBinding: "tls-server-end-point" });
      const verdict = await scramLogin({ host: "127.0.0.1", port: asserted.port, username: "heidi", password: PASSWORD, mechanism: "SCRAM-SHA-1-PLUS", profile: "sasl2", tls: "starttls" });
      assert.equal(verdict.ok, true, `${verdict.condition} ${verdict.text}`);
    } finally {
      await other.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("decides -PLUS per connection: served the ECDSA chain the nodes present, a client gets it; served the RSA chain beside it, not", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-rsa-"));
    try {
      const rsa = { cert: path.join(dir, "rsa.pem"), key: path.join(dir, "rsa.key") };
      await promisify(execFile)("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rsa.key, "-out", rsa.cert, "-days", "2", "-subj", "/CN=lb.test"]);
      const ecdsa = new URL("../../examples/tls/", import.meta.url).pathname;
      const lb = await balancer({ listen: "127.0.0.1:0", backendTls: true, tlsCert: [rsa.cert, `${ecdsa}server.pem`], tlsKey: [rsa.key, `${ecdsa}server.key`] });
      const ecdsaClient = await featuresAfterTls(lb.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" });
      assert.equal(ecdsaClient.keyType, "EC");
      assert.match(ecdsaClient.features, /<mechanism>SCRAM-SHA-1-PLUS<\/mechanism>/);
      const rsaClient = await featuresAfterTls(lb.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-GCM-SHA256" });
      assert.equal(rsaClient.keyType, "RSA");
      assert.doesNotMatch(rsaClient.features, /-PLUS|sasl-channel-binding/, "the nodes present the ECDSA certificate: binding to the RSA one cannot hold");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a client that pinned -PLUS (Conversations' rule) finds it again, and one that can bind but is offered none is warned about", async () => {
    const lines: string[] = [];
    const lb = await balancer({ listen: "127.0.0.1:0", backendTls: true, channelBinding: "none" }, lines);
    const verdict = await scramLogin({ host: "127.0.0.1", port: lb.port, username: "frank", password: PASSWORD, mechanism: "SCRAM-SHA-1", profile: "sasl2", tls: "starttls", gs2Header: "y,," });
    assert.ok(!verdict.offered.sasl1.some((m) => m.endsWith("-PLUS")) && !(verdict.offered.sasl2 ?? []).some((m) => m.endsWith("-PLUS")));
    assert.equal(verdict.ok, false, "a binding-capable node refuses gs2 y as a downgrade: why the warning exists");
    assert.ok(
      lines.some((l) => l.includes('"level":40') && l.includes("cannot offer it to clients") && l.includes("--channel-binding none")),
      "the operator is told once, with what to change",
    );
    const auto = await balancer({ listen: "127.0.0.1:0", backendTls: true });
    const pinned = await scramLogin({ host: "127.0.0.1", port: auto.port, username: "frank", password: PASSWORD, mechanism: "SCRAM-SHA-1-PLUS", profile: "sasl1", tls: "starttls" });
    assert.equal(pinned.ok, true, "with the default --channel-binding auto, -PLUS is offered again: the pinned client logs in");
  });
});
