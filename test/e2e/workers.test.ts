import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { listeningPort, runCli, type CliRun } from "../support/cli.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { freePort, waitFor } from "../support/wait.js";
import { tlsResumption } from "../support/raw.js";
import type { StatusReport } from "../../src/control/status-view.js";

const PASSWORD = "correct horse";
const users = Array.from({ length: 6 }, (_, i) => `w${i}`);

/** `--workers 2` through the CLI, in front of real Prosody nodes. */
describe("--workers", () => {
  let cluster: ProsodyCluster;
  let run: CliRun | undefined;
  const clients: Client[] = [];

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, users: users.map((u) => [u, PASSWORD]) });
  });
  after(async () => {
    await stopAll(clients);
    run?.child.kill("SIGKILL");
    await cluster?.stop();
  });

  it("spreads sessions over both processes, keeps an account's resources on one node, and sums /metrics", async () => {
    const admin = await freePort();
    const args = ["--workers", "2", "--listen", "127.0.0.1:0", "--domain", "lb.test", "--tls-cert", "examples/tls/server.pem", "--tls-key", "examples/tls/server.key", "--metrics", `127.0.0.1:${admin}`, "--shutdown-timeout", "1"];
    for (const node of nodeFlags(cluster.nodes)) args.push("--node", node);
    run = runCli(args);
    const port = await listeningPort(run.child);
    // Both workers listen on the same port: wait for the second.
    while ((run.stdout().match(/"msg":"listening"/g) ?? []).length < 2) await new Promise((r) => setTimeout(r, 50));

    for (const user of users) {
      const [phone, laptop] = [await login({ port, username: user, password: PASSWORD, resource: "phone" }), await login({ port, username: user, password: PASSWORD, resource: "laptop" })];
      clients.push(phone, laptop);
      assert.equal(await nodeOf(phone), await nodeOf(laptop), `${user}'s resources were split across workers`);
    }
    const forwardedBy = new Set(
      run
        .stdout()
        .split("\n")
        .filter((l) => l.includes('"msg":"forwarded"'))
        .map((l) => (JSON.parse(l) as { pid: number }).pid),
    );
    assert.equal(forwardedBy.size, 2, "both worker processes forwarded sessions");

    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    assert.match(metrics, /^xmpp_lb_connections_total\{listener="127\.0\.0\.1:0",outcome="forwarded",transport="tcp"\} 12$/m, "the primary sums both workers");
    assert.match(metrics, /^xmpp_lb_node_up\{node="n1"\} 1$/m);
    const status = (await (await fetch(`http://127.0.0.1:${admin}/status`)).json()) as StatusReport;
    assert.deepEqual(status.instance.workers, { configured: 2, running: 2, restarts: 0 });
    assert.equal(status.rates?.perMinute?.forwards, 12, "the status page's rates read both workers");
    assert.deepEqual(status.listeners.map((l) => [l.address, l.mode]), [["127.0.0.1:0", "forward"]]);

    // SIGTERM with the sessions open: the workers drain them for up to --shutdown-timeout, and the primary's /healthz says so.
    run.child.kill("SIGTERM");
    await waitFor("503 from the primary's /healthz", async () => (await fetch(`http://127.0.0.1:${admin}/healthz`)).status === 503);
    await stopAll(clients.splice(0));
    const { code } = await run.done;
    assert.equal(code, 0);
  });

  it("counts a worker that died and was started again, in /metrics and on the status page", async () => {
    const admin = await freePort();
    const args = ["--workers", "2", "--listen", "127.0.0.1:0", "--domain", "lb.test", "--allow-plaintext", "--metrics", `127.0.0.1:${admin}`, "--shutdown-timeout", "1"];
    for (const node of nodeFlags(cluster.nodes)) args.push("--node", node);
    const restartRun = runCli(args);
    const listening = (): Array<{ pid: number }> => restartRun.stdout().split("\n").filter((l) => l.includes('"msg":"listening"')).map((l) => JSON.parse(l) as { pid: number });
    try {
      await waitFor("both workers listening", () => listening().length === 2, 20_000);
      process.kill(listening()[0]!.pid, "SIGKILL");
      await waitFor("a third worker listening", () => listening().length === 3, 20_000);
      const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
      assert.match(metrics, /^xmpp_lb_worker_restarts_total 1$/m);
      const status = (await (await fetch(`http://127.0.0.1:${admin}/status`)).json()) as StatusReport;
      assert.deepEqual(status.instance.workers, { configured: 2, running: 2, restarts: 1 });
    } finally {
      restartRun.child.kill("SIGTERM");
      await restartRun.done;
    }
  });

  it("resumes a TLS session on whichever worker the client reaches: the workers share ticket keys", async () => {
    const args = ["--workers", "2", "--listen", "direct-tls://127.0.0.1:0", "--domain", "lb.test", "--tls-cert", "examples/tls/server.pem", "--tls-key", "examples/tls/server.key", "--shutdown-timeout", "1"];
    for (const node of nodeFlags(cluster.nodes)) args.push("--node", node);
    const tlsRun = runCli(args);
    try {
      const port = await listeningPort(tlsRun.child);
      while ((tlsRun.stdout().match(/"msg":"listening"/g) ?? []).length < 2) await new Promise((r) => setTimeout(r, 50));
      let { session } = await tlsResumption(port);
      // Round robin sends these to both workers in turn.
      for (let i = 0; i < 6; i++) {
        const next = await tlsResumption(port, session);
        assert.equal(next.reused, true, `reconnection ${i + 1} was a full handshake`);
        session = next.session;
      }
    } finally {
      tlsRun.child.kill("SIGTERM");
      await tlsRun.done;
    }
  });
});
