import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { startBalancer } from "../support/balancer.js";
import { listeningPort, runCli } from "../support/cli.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { RawXmpp, STREAM_OPEN, plainAuth } from "../support/raw.js";
import { waitFor } from "../support/wait.js";

const PASSWORD = "correct horse";

/** SIGTERM through the CLI, with logins half done and sessions forwarded to a real Prosody node. */
describe("graceful stop", () => {
  let cluster: ProsodyCluster;
  let child: ChildProcess | undefined;

  before(async () => {
    cluster = await startProsodyCluster({ count: 1, externalPort: 0, users: [["sam", PASSWORD]] });
  });
  after(async () => {
    child?.kill("SIGKILL");
    await cluster?.stop();
  });

  it("answers half-finished logins with system-shutdown, lets forwarded sessions run until --shutdown-timeout, then exits 0", async () => {
    const args = ["--listen", "127.0.0.1:0", "--domain", "lb.test", "--tls-cert", "examples/tls/server.pem", "--tls-key", "examples/tls/server.key", "--shutdown-timeout", "3", "--sasl-mechanisms", "PLAIN"];
    for (const node of nodeFlags(cluster.nodes)) args.push("--node", node);
    const run = runCli(args);
    child = run.child;
    const port = await listeningPort(child);

    const forwarded: RawXmpp[] = [];
    for (let i = 0; i < 200; i += 25) {
      forwarded.push(
        ...(await Promise.all(
          Array.from({ length: 25 }, async () => {
            const c = await RawXmpp.connect(port);
            await c.secureStream();
            c.send(plainAuth("sam", PASSWORD));
            await c.until(/<success/, 10_000);
            return c;
          }),
        )),
      );
    }
    const halfway = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const c = await RawXmpp.connect(port);
        c.send(STREAM_OPEN);
        await c.until(/<\/stream:features>/);
        return c;
      }),
    );

    const stopped = Date.now();
    child.kill("SIGTERM");
    await Promise.all(halfway.map((c) => c.closed));
    for (const c of halfway) assert.match(c.received, /<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    assert.ok(Date.now() - stopped < 2000, "half-finished logins are answered at once");

    // Forwarded sessions go on: the node answers a stream restart after the balancer got SIGTERM.
    await Promise.all(forwarded.map((c) => (c.send(STREAM_OPEN), c.until(/<success[\s\S]*<stream:features/))));
    assert.ok(forwarded.every((c) => !c.tlsSocket?.destroyed), "no forwarded session was closed before the timeout");

    const { code } = await run.done;
    const took = Date.now() - stopped;
    assert.equal(code, 0);
    assert.ok(took >= 2500 && took < 8000, `exited after ${took} ms, with --shutdown-timeout 3`);
    await Promise.all(forwarded.map((c) => c.closed));
  });

  it("answers /healthz with 503 from the moment it stops accepting, while forwarded sessions drain", async () => {
    const lb = await startBalancer({ node: nodeFlags(cluster.nodes), metrics: "127.0.0.1:0", saslMechanisms: "PLAIN" });
    const healthz = `http://127.0.0.1:${lb.balancer.adminAddress!.port}/healthz`;
    await waitFor("the node up", async () => (await fetch(healthz)).status === 200);
    const session = await RawXmpp.connect(lb.port);
    await session.secureStream();
    session.send(plainAuth("sam", PASSWORD));
    await session.until(/<success/, 10_000);

    // Not awaited: the forwarded session keeps close() draining, and the admin endpoint up, for up to 10 s.
    const closed = lb.balancer.close(10_000);
    const answer = await fetch(healthz);
    assert.equal(answer.status, 503);
    assert.deepEqual(await answer.json(), { status: "shutting down", nodesUp: 1 });
    assert.ok(!session.tlsSocket?.destroyed, "the session is still draining");

    session.destroy();
    await closed;
  });
});
