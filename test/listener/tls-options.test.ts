import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { tlsResumption } from "../support/raw.js";

/** The development certificate (ECDSA P-256). */
const ECDSA = { cert: new URL("../../examples/tls/server.pem", import.meta.url).pathname, key: new URL("../../examples/tls/server.key", import.meta.url).pathname };

interface Handshake {
  version: string | null;
  cipher: string;
  /** The key type of the certificate the balancer chose. */
  keyType: "EC" | "RSA";
}

/** A direct TLS handshake with the balancer, with the client's offer narrowed by `options`. */
function handshake(port: number, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "lb.test", rejectUnauthorized: false, ALPNProtocols: ["xmpp-client"], ...options }, () => {
      const cert = socket.getPeerCertificate();
      resolve({ version: socket.getProtocol(), cipher: socket.getCipher().name, keyType: cert.asn1Curve !== undefined ? "EC" : "RSA" });
      socket.destroy();
    });
    socket.on("error", reject);
  });
}

/** --tls-cert (repeatable), --tls-ciphers and --tls-min-version on a direct TLS listener. */
describe("client TLS options", () => {
  let dir: string;
  let rsa: { cert: string; key: string };
  const balancers: TestBalancer[] = [];
  const balancer = async (input: Parameters<typeof startBalancer>[0]): Promise<TestBalancer> => {
    const lb = await startBalancer({ listen: "direct-tls://127.0.0.1:0", node: ["id=n1,internal=127.0.0.1:1"], healthInterval: 60, ...input });
    balancers.push(lb);
    return lb;
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-tls-"));
    rsa = { cert: path.join(dir, "rsa.pem"), key: path.join(dir, "rsa.key") };
    await promisify(execFile)("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rsa.key, "-out", rsa.cert, "-days", "2", "-subj", "/CN=lb.test"]);
  });
  after(async () => {
    await Promise.all(balancers.map((b) => b.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it("serves an ECDSA and an RSA chain side by side, each to the clients that ask for it", async () => {
    const lb = await balancer({ tlsCert: [rsa.cert, ECDSA.cert], tlsKey: [rsa.key, ECDSA.key] });
    assert.equal((await handshake(lb.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" })).keyType, "EC");
    assert.equal((await handshake(lb.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-GCM-SHA256" })).keyType, "RSA");
    assert.equal((await handshake(lb.port, { minVersion: "TLSv1.3", sigalgs: "ecdsa_secp256r1_sha256" })).keyType, "EC");
    assert.equal((await handshake(lb.port, { minVersion: "TLSv1.3", sigalgs: "rsa_pss_rsae_sha256" })).keyType, "RSA");
  });

  it("offers only forward-secret AEAD suites by default: a CBC-only or static-RSA client is refused", async () => {
    const lb = await balancer({});
    await assert.rejects(handshake(lb.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:AES128-GCM-SHA256" }));
    await assert.rejects(handshake(lb.port, { maxVersion: "TLSv1.1", minVersion: "TLSv1", ciphers: "DEFAULT@SECLEVEL=0" }));
    assert.equal((await handshake(lb.port, {})).version, "TLSv1.3");
  });

  it("--tls-min-version TLSv1.3 refuses TLS 1.2 clients", async () => {
    const lb = await balancer({ tlsMinVersion: "TLSv1.3" });
    await assert.rejects(handshake(lb.port, { maxVersion: "TLSv1.2" }));
    assert.equal((await handshake(lb.port, {})).version, "TLSv1.3");
  });

  it("--tls-ciphers narrows TLS 1.2 to the named suites and keeps TLS 1.3 when it names none", async () => {
    const lb = await balancer({ tlsCiphers: "ECDHE-ECDSA-AES128-GCM-SHA256" });
    await assert.rejects(handshake(lb.port, { maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384" }));
    assert.equal((await handshake(lb.port, { maxVersion: "TLSv1.2" })).cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert.equal((await handshake(lb.port, {})).version, "TLSv1.3");
  });

  it("resumes TLS sessions from tickets, also after the certificate is reloaded (SIGHUP)", async () => {
    const lb = await balancer({});
    const first = await tlsResumption(lb.port);
    assert.equal(first.reused, false);
    const again = await tlsResumption(lb.port, first.session);
    assert.equal(again.reused, true, "a reconnecting client skips the full handshake");
    lb.balancer.reloadTls();
    assert.equal((await tlsResumption(lb.port, again.session)).reused, true, "a reload keeps the ticket keys");
  });

  it("refuses a --tls-cert without its --tls-key", async () => {
    await assert.rejects(balancer({ tlsCert: [rsa.cert, ECDSA.cert], tlsKey: [rsa.key] }), /one --tls-key for each --tls-cert/);
  });
});
