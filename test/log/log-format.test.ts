import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { ROOT, runCli } from "../support/cli.js";
import { tracked } from "../support/children.js";
import { waitFor } from "../support/wait.js";

/** util-linux's script(1): runs a command on a pseudo-terminal, as a person's shell would. */
const SCRIPT = "/usr/bin/script";
const FLAGS = ["--listen", "127.0.0.1:0", "--domain", "lb.test", "--allow-plaintext", "--node", "id=n1,internal=127.0.0.1:1", "--health-interval", "60"];
const ANSI = /\x1b\[[0-9;]*m/g;
/** A pretty line: local time, level, pid, message, then the line's fields. */
const READABLE = /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO \((\d+)\): listening \{"listener":"127\.0\.0\.1:0",.*"address":\{"host":"127\.0\.0\.1","port":\d+\}\}$/m;

const quote = (arg: string): string => `'${arg.replace(/'/g, "'\\''")}'`;

/** Runs the balancer on a terminal until its "listening" line, then stops it with SIGTERM; resolves with what the terminal showed. */
async function onTerminal(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ text: string; code: number | null }> {
  const command = [process.execPath, "--import", "tsx", "src/cli.ts", ...args].map(quote).join(" ");
  const child = spawn(SCRIPT, ["-qefc", command, "/dev/null"], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const exited = tracked(child);
  let raw = "";
  child.stdout!.on("data", (d: Buffer) => (raw += d.toString()));
  const text = (): string => raw.replace(ANSI, "").replace(/\r\n/g, "\n");
  try {
    await waitFor("the listening line", () => /listening/.test(text()), 20_000);
    const pid = Number(READABLE.exec(text())?.[1] ?? /"pid":(\d+)/.exec(text())?.[1]);
    process.kill(pid, "SIGTERM");
    await waitFor("the balancer's exit", () => child.exitCode !== null, 10_000);
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
  return { text: text(), code: child.exitCode };
}

describe("--log-format", () => {
  it("prints one readable line per event on a terminal, and JSON when told so there", { skip: existsSync(SCRIPT) ? false : `no ${SCRIPT}` }, async () => {
    const pretty = await onTerminal(FLAGS);
    assert.match(pretty.text, READABLE);
    assert.match(pretty.text, /\] WARN \(\d+\): node is down: no new users are sent to it \{"component":"health","node":"n1",/);
    assert.match(pretty.text, /\] INFO \(\d+\): stopping \{"signal":"SIGTERM"\}$/m, "the last line is flushed before the exit");
    assert.doesNotMatch(pretty.text, /"level":/);
    assert.equal(pretty.code, 0);

    const json = await onTerminal(FLAGS, { XMPP_LB_LOG_FORMAT: "json" });
    const lines = json.text.trim().split("\n").map((l) => JSON.parse(l) as { msg: string; level: number });
    assert.ok(lines.some((l) => l.msg === "listening" && l.level === 30));
  });

  it("prints JSON lines when stdout is not a terminal, and readable ones when told so", async () => {
    for (const [extra, readable] of [[[], false], [["--log-format", "pretty"], true]] as const) {
      const run = runCli([...FLAGS, ...extra]);
      await waitFor("the listening line", () => /listening/.test(run.stdout()), 20_000);
      run.child.kill("SIGTERM");
      const { code, stdout } = await run.done;
      assert.equal(code, 0);
      const first = stdout.split("\n")[0]!;
      if (readable) assert.match(first, READABLE);
      else assert.equal((JSON.parse(first) as { msg: string }).msg, "listening");
    }
  });

  it("refuses another format with one line and exit code 2", async () => {
    const { code, stderr } = await runCli([...FLAGS, "--log-format", "xml"]).done;
    assert.equal(code, 2);
    assert.match(stderr, /log-format/);
  });
});
