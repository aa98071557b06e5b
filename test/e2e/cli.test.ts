import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { listeningPort, runCli } from "../support/cli.js";
import { RawXmpp, STREAM_OPEN } from "../support/raw.js";

describe("command line", () => {
  const children: ChildProcess[] = [];
  let dir: string | undefined;
  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const badValues: Array<[string[], RegExp]> = [
    [["--domain", "lb.test", "--allow-plaintext", "--strategy", "round-robin"], /strategy/],
    [["--domain", "lb.test", "--allow-plaintext", "--node", "id=n1,internal=nowhere"], /--node .*'nowhere' is not HOST:PORT|not HOST:PORT/],
    [["--domain", "lb.test"], /--tls-cert and --tls-key are required/],
    [["--domain", "lb.test", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], /cannot read the TLS certificate/],
    [["--bogus-flag"], /Unknown argument/],
  ];
  for (const [args, message] of badValues) {
    it(`exits 2 with one clear line for ${args.at(-1)}`, async () => {
      const { code, stderr } = await runCli(args).done;
      assert.equal(code, 2);
      assert.match(stderr, message);
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    });
  }

  it("reads flags from XMPP_LB_* env and a --config file, serves, and exits 0 on SIGTERM", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-cli-"));
    const config = path.join(dir, "lb.json");
    await writeFile(config, JSON.stringify({ listen: ["127.0.0.1:0"], "tls-cert": "examples/tls/server.pem", "tls-key": "examples/tls/server.key", node: ["id=n1,internal=127.0.0.1:1"] }));
    const { child, done } = runCli(["--config", config, "--log-level", "info"], { XMPP_LB_DOMAIN: "env.test" });
    children.push(child);
    const port = await listeningPort(child);
    const c = await RawXmpp.connect(port);
    c.send(STREAM_OPEN.replace("lb.test", "env.test"));
    await c.until(/<starttls/);
    c.destroy();
    child.kill("SIGTERM");
    const { code } = await done;
    assert.equal(code, 0);
  });
});
