import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import { ROOT } from "../support/cli.js";
import { login, nodeOf } from "../support/clients.js";
import { ensureBaseImage, type BaseImage } from "../support/container-base.js";
import { buildImage } from "../support/container-image.js";
import { CONTAINER_LIMITS, podman, podmanStatus, whyPodmanCannotRun } from "../support/podman.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { freePort, waitFor } from "../support/wait.js";

// The container's own loopback addresses (it shares the host's network): no other test listens there.
const HOST = "127.0.30.1";
const PASSWORD = "container password";
const SHUTDOWN_TIMEOUT_S = 4;

const cannot = await whyPodmanCannotRun();
if (cannot !== null) console.log(`The container image test is skipped: ${cannot}`);

/** The repository's Containerfile, built on a locally made base and run in front of real Prosody nodes. */
describe("the container image", { skip: cannot ?? false }, () => {
  let base: BaseImage;
  let image: string;
  let cluster: ProsodyCluster;
  let client: Client | undefined;
  const timings: string[] = [];
  const containers = new Set<string>();
  // An interrupted run leaves no container behind (after() does not run on a fatal signal or exit()).
  const removeAll = (): void => {
    for (const name of containers) spawnSync("podman", ["rm", "--force", "--time", "0", name], { stdio: "ignore" });
  };
  process.once("exit", removeAll);

  let port: number;
  let adminPort: number;
  const name = `xmpp-lb-test-${process.pid}`;
  const healthz = (): Promise<Response> => fetch(`http://${HOST}:${adminPort}/healthz`);

  before(async () => {
    let t = Date.now();
    base = await ensureBaseImage();
    timings.push(`base image (${base.source}): ${((Date.now() - t) / 1000).toFixed(1)} s`);
    t = Date.now();
    image = await buildImage(base.tag);
    timings.push(`image build: ${((Date.now() - t) / 1000).toFixed(1)} s`);
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, users: [["alice", PASSWORD]] });
    port = await freePort(HOST);
    adminPort = await freePort(HOST);
  });

  after(async () => {
    await client?.stop().catch(() => {});
    for (const c of containers) await podmanStatus(["rm", "--force", "--time", "0", c]);
    containers.clear();
    if (image !== undefined) await podmanStatus(["rmi", "--force", image]);
    await cluster?.stop();
  });

  it("is the production build: non-root user, declared ports, HEALTHCHECK, tini, no development dependencies", async (t) => {
    for (const line of timings) t.diagnostic(line);
    const [config] = JSON.parse(await podman(["image", "inspect", image])) as Array<{ Config: { User: string; ExposedPorts: Record<string, unknown>; Entrypoint: string[] }; Healthcheck?: { Test: string[] } }>;
    assert.equal(config!.Config.User, "10001:10001");
    assert.deepEqual(Object.keys(config!.Config.ExposedPorts).sort(), ["5222/tcp", "5223/tcp", "9102/tcp"]);
    assert.deepEqual(config!.Config.Entrypoint, ["tini", "--", "node", "/app/bin/xmpp-lb.js"]);
    assert.deepEqual(config!.Healthcheck?.Test, ["CMD", "node", "/app/container/healthcheck.js"]);
    t.diagnostic(`image size: ${(await podman(["image", "inspect", "--format", "{{.Size}}", image])).trim()} bytes`);

    const listing = await podman(["run", "--rm", ...CONTAINER_LIMITS, "--entrypoint", "node", image, "-e", "console.log(require('fs').readdirSync('/app/node_modules').join(' '))"]);
    const modules = listing.trim().split(" ");
    for (const dep of Object.keys((JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> }).dependencies)) {
      assert.ok(modules.includes(dep.split("/")[0]!), `${dep} is in the image`);
    }
    for (const dev of ["typescript", "tsx", "playwright-core", "yaml"]) assert.ok(!modules.includes(dev), `${dev} (a development dependency) is not in the image`);

    // Arguments go to the balancer's CLI: the same image runs the `node register` sidecar.
    assert.match(await podman(["run", "--rm", ...CONTAINER_LIMITS, image, "node", "--help"]), /xmpp-lb node register/);
  });

  it("serves a real login in front of the Prosody nodes, read-only, with its HEALTHCHECK passing", async () => {
    const args = [
      `--listen=${HOST}:${port}`,
      "--domain=lb.test",
      "--tls-cert=/app/examples/tls/server.pem",
      "--tls-key=/app/examples/tls/server.key",
      `--shutdown-timeout=${SHUTDOWN_TIMEOUT_S}`,
      ...nodeFlags(cluster.nodes).map((n) => `--node=${n}`),
    ];
    containers.add(name);
    // As Kubernetes' readOnlyRootFilesystem would run it; the periodic check needs systemd, `healthcheck run` does not.
    await podman(["run", "--detach", "--name", name, ...CONTAINER_LIMITS, "--read-only", "--read-only-tmpfs=false", "--health-interval=disable", "--env", `XMPP_LB_METRICS=${HOST}:${adminPort}`, image, ...args]);
    await waitFor("/healthz 200 from the container", async () => (await healthz().catch(() => null))?.status === 200, 30_000);

    client = await login({ host: HOST, port, username: "alice", password: PASSWORD, resource: "container" });
    assert.match(await nodeOf(client), /^n[12]$/);

    const check = await podmanStatus(["healthcheck", "run", name]);
    assert.equal(check.code, 0, `podman healthcheck run: ${check.stdout}${check.stderr}`);
  });

  it("runs tini as PID 1 and the balancer under it, both as the image's user", async () => {
    const pid = (await podman(["inspect", "--format", "{{.State.Pid}}", name])).trim();
    const status = (p: string): { name: string; uid: string } => {
      const text = readFileSync(`/proc/${p}/status`, "utf8");
      return { name: /^Name:\s+(\S+)/m.exec(text)![1]!, uid: /^Uid:\s+(\d+)/m.exec(text)![1]! };
    };
    assert.deepEqual(status(pid), { name: "tini", uid: "10001" });
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
    assert.equal(children.length, 1);
    assert.deepEqual(status(children[0]!), { name: "node", uid: "10001" });
  });

  it("passes SIGHUP on to the balancer: the certificate is reloaded and sessions stay", async () => {
    await podman(["kill", "--signal", "HUP", name]);
    await waitFor("the reload in the container's log", async () => (await podman(["logs", name])).includes('"msg":"TLS certificate reloaded"'), 10_000);
    assert.equal((await podman(["inspect", "--format", "{{.State.Running}}", name])).trim(), "true");
    assert.match(await nodeOf(client!), /^n[12]$/);
  });

  it("drains on podman stop (SIGTERM): /healthz 503 while the forwarded session runs on, then exit 0", async () => {
    const started = Date.now();
    const stopping = podman(["stop", "--time", String(SHUTDOWN_TIMEOUT_S + 20), name], { timeoutMs: 60_000 });
    const last: { answer?: Response | null } = {};
    await waitFor("/healthz 503 while draining", async () => (last.answer = await healthz().catch(() => null))?.status === 503, 5000);
    assert.deepEqual(await last.answer!.json(), { status: "shutting down", nodesUp: 2 });
    // The forwarded session still answers after the balancer got the signal.
    assert.match(await nodeOf(client!), /^n[12]$/);

    await stopping;
    const took = (Date.now() - started) / 1000;
    assert.equal((await podman(["inspect", "--format", "{{.State.ExitCode}}", name])).trim(), "0");
    assert.ok(took >= SHUTDOWN_TIMEOUT_S - 0.5 && took < SHUTDOWN_TIMEOUT_S + 10, `stopped after ${took} s with --shutdown-timeout ${SHUTDOWN_TIMEOUT_S}`);
    assert.match(await podman(["logs", name]), /"signal":"SIGTERM","msg":"stopping"/);
  });
});
