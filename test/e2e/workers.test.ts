import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { listeningPort, runCli, type CliRun } from "../support/cli.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { freePort, waitFor } from "../support/wait.js";
import { RawXmpp, STREAM_OPEN, plainAuth, tlsResumption } from "../support/raw.js";
import type { StatusReport } from "../../src/control/status-view.js";

const PASSWORD = "correct horse";
const users = Array.from({ length: 6 }, (_, i) => `w${i}`);

/** Starts `xmpp-lb --workers 2 ARGS` and waits until both workers listen. */
async function startWorkers(args: string[]): Promise<{ run: CliRun; port: number }> {
  const run = runCli(["--workers", "2", "--domain", "lb.test", "--tls-cert", "examples/tls/server.pem", "--tls-key", "examples/tls/server.key", "--shutdown-timeout", "1", ...args]);
  const port = await listeningPort(run.child);
  await waitFor("both workers listening", () => listening(run) >= 2, 20_000);
  return { run, port };
}

const listening = (run: CliRun): number => (run.stdout().match(/"msg":"listening"/g) ?? []).length;

/** Pids of the processes that logged `msg`. */
const pidsThatLogged = (run: CliRun, msg: string): Set<number> =>
  new Set(
    run
      .stdout()
      .split("\n")
      .filter((l) => l.includes(`"msg":"${msg}"`))
      .map((l) => (JSON.parse(l) as { pid: number }).pid),
  );

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
    // The primary keeps the limits' counts for all workers: one limit, not one per worker.
    assert.match(metrics, /^xmpp_lb_preauth_connections_limit 10000$/m);
    assert.match(metrics, /^xmpp_lb_preauth_connections 0$/m, "every client was handed over");
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

  it("gives back what a killed worker held: its sessions no longer count against the node's maxconn", async () => {
    const [admin, listen] = [await freePort(), await freePort()];
    const [node] = nodeFlags(cluster.nodes);
    // A fixed port: with every worker gone at once, a port 0 would be bound anew by their replacements.
    const { run: killRun, port } = await startWorkers(["--listen", `127.0.0.1:${listen}`, "--metrics", `127.0.0.1:${admin}`, "--node", `${node},maxconn=2`]);
    const load = async (): Promise<number> => ((await (await fetch(`http://127.0.0.1:${admin}/nodes`)).json()) as { nodes: { load: number }[] }).nodes[0]!.load;
    const sessions: Client[] = [];
    try {
      for (const user of ["w0", "w1"]) sessions.push(await login({ port, username: user, password: PASSWORD }));
      await waitFor("both sessions counted", async () => (await load()) === 2);
      // Every worker holding a session dies without a word to the primary; their clients' connections break.
      for (const pid of pidsThatLogged(killRun, "forwarded")) process.kill(pid, "SIGKILL");
      await stopAll(sessions.splice(0));
      await waitFor("the dead workers' sessions to be given back", async () => (await load()) === 0, 10_000);
      await waitFor("the replacement workers listening", () => listening(killRun) >= 4, 20_000);
      for (const user of ["w2", "w3"]) sessions.push(await login({ port, username: user, password: PASSWORD }));
      await waitFor("the new users counted", async () => (await load()) === 2);
    } finally {
      await stopAll(sessions);
      killRun.child.kill("SIGTERM");
      await killRun.done;
    }
  });

  it("counts --max-connections-per-address over all workers, not per worker, and gives back a dead worker's share", async () => {
    const [node] = nodeFlags(cluster.nodes);
    const listen = await freePort();
    const { run: limitRun, port } = await startWorkers(["--listen", `127.0.0.1:${listen}`, "--node", node!, "--max-connections-per-address", "2"]);
    const open: RawXmpp[] = [];
    /** Opens `count` connections from one address, one after another: how many were refused. */
    const refusals = async (count: number): Promise<number> => {
      let refused = 0;
      for (let i = 0; i < count; i++) {
        const c = await RawXmpp.connect(port, "127.0.0.1", { localAddress: "127.0.0.40" });
        open.push(c);
        c.send(STREAM_OPEN);
        const text = await c.until(/<\/stream:features>|<\/stream:error>/);
        if (/too many connections from your address/.test(text)) refused += 1;
      }
      return refused;
    };
    try {
      // Round robin hands these to both workers in turn: each worker alone would admit two.
      assert.equal(await refusals(4), 2, "two of four connections from one address admitted");
      // The admitted two die with their workers: no close is reported for them, the primary gives them back.
      for (const pid of pidsThatLogged(limitRun, "listening")) process.kill(pid, "SIGKILL");
      await Promise.all(open.splice(0).map((c) => c.closed));
      await waitFor("the replacement workers listening", () => listening(limitRun) >= 4, 20_000);
      assert.equal(await refusals(2), 0, "the address has its two connections again");
    } finally {
      for (const c of open) c.destroy();
      limitRun.child.kill("SIGTERM");
      await limitRun.done;
    }
  });

  it("counts --max-auth-failures-per-address over all workers, not per worker", async () => {
    const [node] = nodeFlags(cluster.nodes);
    const { run: authRun, port } = await startWorkers(["--listen", "127.0.0.1:0", "--node", node!, "--sasl-mechanisms", "PLAIN", "--max-auth-failures-per-address", "2"]);
    const attempt = async (password: string): Promise<string> => {
      const c = await RawXmpp.connect(port, "127.0.0.1", { localAddress: "127.0.0.41" });
      try {
        await c.secureStream();
        c.send(plainAuth("w5", password));
        return await c.until(/<success|<failure|<stream:error>/);
      } finally {
        c.destroy();
      }
    };
    try {
      // One failure on each worker (round robin), then both workers refuse the address.
      for (let i = 0; i < 2; i++) assert.match(await attempt("wrong"), /<failure/);
      for (let i = 0; i < 2; i++) assert.match(await attempt(PASSWORD), /<policy-violation/, `attempt ${i + 3} was not refused`);
    } finally {
      authRun.child.kill("SIGTERM");
      await authRun.done;
    }
  });
});
