// Self-check of the modern-login support, straight against the real servers
// (no balancer): Prosody 13 with prosody-modules' SASL2 family and ejabberd
// 24.12 (both from bookworm-backports), logged into by @xmpp/client 0.14
// (SASL2, Bind2, SM inline, FAST) and by the raw SCRAM-*-PLUS client.
// Addresses: Prosody on 127.0.41.i / 127.0.42.i, ejabberd on 127.0.43.i /
// 127.0.44.i (no other test uses them), every port picked free.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { nodeOf } from "./clients.js";
import { startEjabberdCluster, type EjabberdCluster } from "./ejabberd.js";
import { LoginError, modernLogin, tokenLogin, type ModernSession } from "./modern-client.js";
import { startProsodyCluster, type HostPort, type ProsodyCluster } from "./prosody.js";
import { scramLogin, tlsServerEndPoint } from "./scram-plus.js";

const DEV_CERT = new X509Certificate(readFileSync(new URL("../../examples/tls/server.pem", import.meta.url)));
const tcp = (a: HostPort): string => `xmpp://${a.host}:${a.port}`;

/** Runs `fn` with the session, then stops its client. */
async function using<T>(session: Promise<ModernSession>, fn: (s: ModernSession) => Promise<T> | T): Promise<T> {
  const s = await session;
  try {
    return await fn(s);
  } finally {
    await s.client.stop().catch(() => {});
  }
}

/** The password login a modern client makes: SASL2, Bind2 with SM enabled inline, a FAST token asked for and received. */
function assertModernLogin(s: ModernSession, mechanism: string): void {
  const { offered, attempts } = s.report;
  assert.ok(offered.sasl2?.includes(mechanism), `SASL2 offers ${mechanism}: ${JSON.stringify(offered)}`);
  assert.ok(offered.bind2?.includes("urn:xmpp:sm:3"), "Bind2 offers SM inline");
  assert.ok(offered.fast?.includes("HT-SHA-256-NONE"), "FAST offers HT-SHA-256-NONE");
  assert.deepEqual(attempts, [
    { profile: "sasl2", mechanism, fast: false, requestToken: "HT-SHA-256-NONE", bind2: true, smEnable: true, userAgentId: s.userAgentId, verdict: "success" },
  ]);
  assert.ok(s.report.bound && s.report.tokenReceived);
  assert.match(s.jid, /^alice@lb\.test\/.+/);
  assert.ok(s.sm.enabled && s.sm.id !== "", "XEP-0198 enabled (inline, with resumption)");
  assert.equal(s.token?.mechanism, "HT-SHA-256-NONE");
  assert.ok(s.token.token.length > 0);
  assert.ok(Date.parse(s.token.expiry) > Date.now() + 7 * 86400_000, `token expiry ${s.token.expiry}`);
}

/** A login with the token alone: one FAST attempt, which succeeded (the password given was wrong). */
function assertTokenLogin(s: ModernSession, userAgentId: string): void {
  assert.deepEqual(s.report.attempts, [
    { profile: "sasl2", mechanism: "HT-SHA-256-NONE", fast: true, requestToken: null, bind2: true, smEnable: true, userAgentId, verdict: "success" },
  ]);
  assert.ok(s.report.bound && s.sm.enabled);
  assert.match(s.jid, /^alice@lb\.test\/.+/);
}

/** The token is refused, and so is the wrong password xmpp.js falls back to. */
async function assertTokenRefused(login: Promise<ModernSession>): Promise<void> {
  await assert.rejects(login, (err: unknown) => {
    assert.ok(err instanceof LoginError, String(err));
    assert.deepEqual(
      err.report.attempts.map((a) => [a.mechanism, a.fast, a.verdict]),
      [
        ["HT-SHA-256-NONE", true, "failure:not-authorized"],
        ["SCRAM-SHA-1", false, "failure:not-authorized"],
      ],
    );
    return true;
  });
}

describe("modern logins against the servers themselves", () => {
  describe("Prosody 13 with mod_sasl2, mod_sasl2_bind2, mod_sasl2_sm, mod_sasl2_fast", () => {
    let cluster: ProsodyCluster;
    before(async () => {
      cluster = await startProsodyCluster({
        count: 2,
        modern: true,
        websocket: true,
        network: { internal: "127.0.41", external: "127.0.42" },
        externalPort: 0,
        users: [["alice", "secret"]],
      });
    });
    after(() => cluster?.stop());

    it("xmpp.js: SASL2 + Bind2 + SM + a FAST token over STARTTLS; the token alone logs in on that node, and not on the other (own storage)", async () => {
      const [n1, n2] = cluster.nodes as [ProsodyCluster["nodes"][0], ProsodyCluster["nodes"][0]];
      const first = await using(modernLogin({ service: tcp(n1.internal), username: "alice", password: "secret" }), async (s) => {
        assertModernLogin(s, "SCRAM-SHA-1");
        assert.equal(s.report.tls, "TLSv1.3");
        assert.equal(await nodeOf(s.client), "n1");
        return s;
      });
      const token = first.token!;
      await using(tokenLogin({ service: tcp(n1.internal), username: "alice", password: "wrong", token, userAgentId: first.userAgentId }), async (s) => {
        assertTokenLogin(s, first.userAgentId);
        assert.equal(await nodeOf(s.client), "n1");
      });
      // Used once, the token stays good (Prosody moves it from "new" to "current"): again, now over the external address.
      await using(tokenLogin({ service: tcp(n1.external), username: "alice", password: "wrong", token, userAgentId: first.userAgentId }), (s) => assertTokenLogin(s, first.userAgentId));
      await assertTokenRefused(tokenLogin({ service: tcp(n2.internal), username: "alice", password: "wrong", token, userAgentId: first.userAgentId }));
    });

    it("the token is bound to the <user-agent id> that asked for it", async () => {
      const n1 = cluster.nodes[0]!;
      const first = await using(modernLogin({ service: tcp(n1.internal), username: "alice", password: "secret" }), (s) => s);
      await assertTokenRefused(tokenLogin({ service: tcp(n1.internal), username: "alice", password: "wrong", token: first.token!, userAgentId: "another-client" }));
    });

    it("xmpp.js over WebSocket (ws://): the same login, and a token login", async () => {
      const n2 = cluster.nodes[1]!;
      const url = n2.websocket!.internal;
      const first = await using(modernLogin({ service: url, username: "alice", password: "secret" }), (s) => {
        assertModernLogin(s, "SCRAM-SHA-1");
        assert.equal(s.report.tls, null);
        assert.deepEqual(s.report.offered.fast, ["HT-SHA-256-NONE"], "no channel binding on plaintext: HT-SHA-256-NONE only");
        return s;
      });
      await using(tokenLogin({ service: url, username: "alice", password: "wrong", token: first.token!, userAgentId: first.userAgentId }), (s) => assertTokenLogin(s, first.userAgentId));
    });

    it("advertises FAST only to a stream header whose `from` names the user", async () => {
      // Plaintext WebSocket: xmpp.js itself puts `from` only in the headers of TLS streams.
      await using(modernLogin({ service: cluster.nodes[0]!.websocket!.internal, username: "alice", password: "secret", announceJid: false }), (s) => {
        assert.equal(s.report.offered.fast, null);
        assert.ok(s.report.offered.sasl2 !== null && s.report.offered.bind2 !== null, "SASL2 and Bind2 are offered all the same");
        assert.equal(s.report.attempts[0]?.requestToken, null);
        assert.equal(s.token, null);
        assert.ok(s.report.bound && s.sm.enabled);
      });
    });
  });

  describe("Prosody 13 with channel binding (SCRAM-SHA-256, tls_server_end_point_hash of the node's certificate)", () => {
    let cluster: ProsodyCluster;
    const endPoint = tlsServerEndPoint(DEV_CERT);
    before(async () => {
      cluster = await startProsodyCluster({
        count: 1,
        modern: true,
        channelBinding: true,
        tlsServerEndPointHash: endPoint.toString("hex"),
        passwordHash: "SHA-256",
        network: { internal: "127.0.41", external: "127.0.42" },
        externalPort: 0,
        users: [["alice", "secret"]],
      });
    });
    after(() => cluster?.stop());
    const login = (o: Partial<Parameters<typeof scramLogin>[0]>) => {
      const n = cluster.nodes[0]!;
      return scramLogin({ host: n.internal.host, port: n.internal.port, username: "alice", password: "secret", mechanism: "SCRAM-SHA-256-PLUS", ...o });
    };

    it("the RFC 5929 hash of the development certificate (ECDSA with SHA-256): SHA-256 of its DER", () => {
      assert.equal(endPoint.length, 32);
      assert.equal(endPoint.toString("hex"), DEV_CERT.fingerprint256.replace(/:/g, "").toLowerCase());
    });

    for (const profile of ["sasl1", "sasl2"] as const) {
      it(`${profile}: SCRAM-SHA-256-PLUS with tls-server-end-point over STARTTLS succeeds, and the server proves it saw the same binding`, async () => {
        for (const maxTlsVersion of ["TLSv1.2", "TLSv1.3"] as const) {
          const v = await login({ profile, maxTlsVersion });
          assert.equal(v.ok, true, `${maxTlsVersion}: ${v.condition} ${v.text}`);
          assert.equal(v.serverVerified, true);
          assert.equal(v.tlsProtocol, maxTlsVersion);
          assert.deepEqual(v.binding, endPoint);
          assert.ok(v.offered.channelBindings.includes("tls-server-end-point"), "XEP-0440 lists tls-server-end-point");
          assert.ok((profile === "sasl2" ? v.offered.sasl2 : v.offered.sasl1)?.includes("SCRAM-SHA-256-PLUS"));
          if (profile === "sasl2") assert.equal(v.authorizationIdentifier, "alice@lb.test");
        }
      });

      it(`${profile}: a wrong binding, and a 'y' client offered -PLUS, are refused; an 'n' client logs in`, async () => {
        const wrong = await login({ profile, bindingData: Buffer.alloc(32) });
        assert.deepEqual([wrong.ok, wrong.condition], [false, "malformed-request"]);
        const y = await login({ profile, mechanism: "SCRAM-SHA-256", gs2Header: "y,," });
        assert.deepEqual([y.ok, y.condition], [false, "malformed-request"], "downgrade: the client could bind and -PLUS was offered");
        const n = await login({ profile, mechanism: "SCRAM-SHA-256", gs2Header: "n,," });
        assert.equal(n.ok, true);
      });
    }
  });

  describe("ejabberd 24.12 (SASL2 and Bind2 built in, mod_auth_fast)", () => {
    let cluster: EjabberdCluster;
    before(async () => {
      cluster = await startEjabberdCluster({ count: 2, modern: true, network: { internal: "127.0.43", external: "127.0.44" }, users: [["alice", "secret"]] });
    });
    after(() => cluster?.stop());

    it("xmpp.js: SASL2 + Bind2 + SM + a FAST token; the token alone logs in on that node, and not on the other", async () => {
      const [n1, n2] = cluster.nodes as [EjabberdCluster["nodes"][0], EjabberdCluster["nodes"][0]];
      const first = await using(modernLogin({ service: tcp(n1.internal), username: "alice", password: "secret" }), async (s) => {
        assertModernLogin(s, "SCRAM-SHA-1");
        assert.deepEqual(s.report.offered.fast, ["HT-SHA-256-NONE", "HT-SHA-256-UNIQ", "HT-SHA-256-EXPR", "HT-SHA-256-ENDP"]);
        assert.ok(!s.report.offered.sasl2!.some((m) => m.endsWith("-PLUS")), "-PLUS disabled (the default)");
        assert.equal(await nodeOf(s.client), "n1");
        return s;
      });
      await using(tokenLogin({ service: tcp(n1.internal), username: "alice", password: "wrong", token: first.token!, userAgentId: first.userAgentId }), async (s) => {
        assertTokenLogin(s, first.userAgentId);
        assert.equal(await nodeOf(s.client), "n1");
      });
      await assertTokenRefused(tokenLogin({ service: tcp(n2.internal), username: "alice", password: "wrong", token: first.token!, userAgentId: first.userAgentId }));
    });

    it("offers SASL2 only to a stream header whose `from` names the user", async () => {
      const n = cluster.nodes[0]!;
      const plain = { host: n.internal.host, port: n.internal.port, username: "alice", password: "secret", mechanism: "SCRAM-SHA-256", gs2Header: "n,,", tls: "none" } as const;
      const anonymous = await scramLogin({ ...plain, announceJid: false });
      assert.equal(anonymous.offered.sasl2, null);
      assert.equal(anonymous.ok, true, "SASL1 all the same");
      const named = await scramLogin({ ...plain, profile: "sasl2" });
      assert.ok(named.offered.sasl2?.includes("SCRAM-SHA-256"), "plaintext SASL2: allow_unencrypted_sasl2");
      assert.deepEqual([named.ok, named.authorizationIdentifier], [true, "alice@lb.test"]);
    });

    it("refuses a SCRAM client's gs2 'y' flag on TLS though -PLUS is disabled (and takes it on this plaintext listener)", async () => {
      // What a balancer must know: a binding-capable client offered no -PLUS sends 'y'; ejabberd 24.12 lists
      // its channel bindings (XEP-0440) on TLS with -PLUS disabled, and its SCRAM then calls 'y' a downgrade.
      const n = cluster.nodes[0]!;
      const base = { host: n.internal.host, port: n.internal.port, username: "alice", password: "secret", mechanism: "SCRAM-SHA-256" } as const;
      const overTls = await scramLogin({ ...base, gs2Header: "y,," });
      assert.ok(overTls.offered.channelBindings.length > 0 && !overTls.offered.sasl1.some((m) => m.endsWith("-PLUS")));
      assert.deepEqual([overTls.ok, overTls.condition, overTls.text], [false, "not-authorized", "Invalid channel binding"]);
      assert.equal((await scramLogin({ ...base, gs2Header: "n,," })).ok, true);
      // With allow_unencrypted_sasl2 (modern) the plaintext stream's bindings are "not available", where 'y' is fine.
      assert.equal((await scramLogin({ ...base, gs2Header: "y,,", tls: "none" })).ok, true);
    });
  });
});
