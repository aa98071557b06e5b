// Self-check of the Prosody fixture: real nodes, both addresses, node identity.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { startProsodyCluster, type HostPort, type ProsodyCluster } from "./prosody.js";
import { login as clientLogin, nodeOf as nodeNameOf } from "./clients.js";

const CA = readFileSync(new URL("../../examples/tls/ca.pem", import.meta.url));
const OPEN = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='lb.test' version='1.0'>`;

/** Opens a stream on a fresh socket and returns the first <stream:features/> (optionally after STARTTLS). */
async function features(addr: HostPort, opts: { starttls?: boolean; maxVersion?: tls.SecureVersion } = {}): Promise<string> {
  let socket: net.Socket = net.connect(addr.port, addr.host);
  let text = "";
  const until = (marker: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const i = text.indexOf(marker);
        if (i < 0) return;
        const got = text.slice(0, i + marker.length);
        text = text.slice(i + marker.length);
        socket.off("data", onData);
        resolve(got);
      };
      const onData = (chunk: Buffer): void => {
        text += chunk.toString("utf8");
        check();
      };
      socket.on("data", onData);
      socket.once("error", reject);
      socket.once("close", () => reject(new Error(`closed; got ${text}`)));
      check();
    });
  try {
    socket.write(OPEN);
    const plain = await until("</stream:features>");
    if (!opts.starttls) return plain;
    socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await until("/>");
    socket.removeAllListeners();
    const secure = tls.connect({ socket, ca: CA, servername: "lb.test", maxVersion: opts.maxVersion });
    await new Promise<void>((resolve, reject) => secure.once("secureConnect", resolve).once("error", reject));
    socket = secure;
    socket.write(OPEN);
    return await until("</stream:features>");
  } finally {
    socket.destroy();
  }
}

const login = (addr: HostPort, username: string, password: string): Promise<Client> => clientLogin({ ...addr, username, password });

describe("Prosody fixture", () => {
  let cluster: ProsodyCluster;
  before(async () => {
    cluster = await startProsodyCluster({ count: 2, users: [["alice", "secret"]] });
  });
  after(async () => {
    const dir = cluster?.dir;
    await cluster?.stop();
    if (dir) assert.throws(() => readFileSync(`${dir}/n1/prosody.cfg.lua`), /ENOENT/);
  });

  it("lays nodes out on 127.0.1.i:<port> and 127.0.2.i:5222", () => {
    assert.deepEqual(
      cluster.nodes.map((n) => [n.id, n.internal.host, n.external.host, n.external.port]),
      [
        ["n1", "127.0.1.1", "127.0.2.1", 5222],
        ["n2", "127.0.1.2", "127.0.2.2", 5222],
      ],
    );
    for (const n of cluster.nodes) assert.ok(n.pid > 0 && n.internal.port > 0);
  });

  it("serves stream features on internal and external addresses", async () => {
    for (const n of cluster.nodes) {
      for (const addr of [n.internal, n.external]) {
        const f = await features(addr);
        assert.match(f, /<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'\/>/, `${n.id} ${addr.host}`);
        // Plaintext SASL is allowed (trusted network): PLAIN and SCRAM-SHA-1.
        assert.match(f, /<mechanism>PLAIN<\/mechanism>/);
        assert.match(f, /<mechanism>SCRAM-SHA-1<\/mechanism>/);
      }
    }
  });

  it("does STARTTLS with the dev certificate and offers no -PLUS even on TLS 1.2", async () => {
    const n = cluster.nodes[0]!;
    for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
      const f = await features(n.external, { starttls: true, maxVersion });
      assert.match(f, /<mechanism>SCRAM-SHA-1<\/mechanism>/);
      assert.doesNotMatch(f, /PLUS|starttls/);
    }
  });

  it("logs a user in on every node, which names itself in disco#info", async () => {
    for (const n of cluster.nodes) {
      const xmpp = await login(n.internal, "alice", "secret");
      try {
        assert.equal(xmpp.jid?.toString().split("/")[0], "alice@lb.test");
        assert.equal(await nodeNameOf(xmpp), n.id);
        assert.ok(xmpp.streamManagement.enabled && xmpp.streamManagement.id, "XEP-0198 enabled with resumption");
      } finally {
        await xmpp.stop();
      }
    }
  });

  it("test/clients/slixmpp_client.py logs in on a node and reports it", async () => {
    const n = cluster.nodes[1]!;
    const script = fileURLToPath(new URL("../clients/slixmpp_client.py", import.meta.url));
    const ca = fileURLToPath(new URL("../../examples/tls/ca.pem", import.meta.url));
    const args = [script, "--jid", "alice@lb.test", "--password", "secret", "--host", n.internal.host, "--port", String(n.internal.port), "--ca", ca, "--timeout", "15"];
    const { stdout } = await promisify(execFile)("/usr/bin/python3", args);
    const out = JSON.parse(stdout) as { ok: boolean; jid: string; node: string; redirects: string[]; address: [string, number] };
    assert.equal(out.ok, true);
    assert.match(out.jid, /^alice@lb\.test\/.+/);
    assert.equal(out.node, "n2");
    assert.deepEqual(out.redirects, []);
    assert.deepEqual(out.address, [n.internal.host, n.internal.port]);
  });

  it("registers on running nodes and survives a kill and restart", async () => {
    await cluster.register("bob", "hunter2");
    const n = cluster.nodes[1]!;
    const oldPid = n.pid;
    await n.kill("SIGKILL");
    assert.equal(n.pid, 0);
    await assert.rejects(features(n.internal));
    await n.start();
    assert.notEqual(n.pid, oldPid);
    const xmpp = await login(n.external, "bob", "hunter2");
    try {
      assert.equal(await nodeNameOf(xmpp), "n2");
    } finally {
      await xmpp.stop();
    }
  });
});
