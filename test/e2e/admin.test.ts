import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConfigInput } from "../../src/index.js";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { chromiumMissing, launchChromium, type Chromium } from "../support/chromium.js";
import { runCli } from "../support/cli.js";
import { waitFor } from "../support/wait.js";

/** One node nobody listens on: these tests look at its drain flag only. */
const NODE = "id=n1,internal=127.0.0.1:1";
const TOKEN = "s3cret-Admin_token";

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One HTTP request with exactly these headers (fetch() would not let a test set Host). */
function request(port: number, method: string, urlPath: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: urlPath, headers: { host: `127.0.0.1:${port}`, ...headers }, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** A request written by hand (no Host, an empty one: Node's client sends neither); resolves with the status line. */
function rawRequest(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(`${head}\r\n\r\n`));
    let text = "";
    socket.on("data", (d: Buffer) => (text += d.toString()));
    socket.on("end", () => resolve(text.split("\r\n")[0] ?? ""));
    socket.on("error", reject);
  });
}

async function adminBalancer(input: ConfigInput, logLines?: string[]): Promise<{ lb: TestBalancer; port: number }> {
  const lb = await startBalancer({ allowPlaintext: true, node: NODE, metrics: "127.0.0.1:0", healthInterval: 60, ...input }, logLines);
  return { lb, port: lb.balancer.adminAddress!.port };
}

const refusals = (logLines: string[], reason: string): number => logLines.filter((l) => l.includes('"msg":"admin request refused"') && l.includes(`"reason":"${reason}"`)).length;

describe("the admin endpoint refuses what does not come from an operator's tool", () => {
  let lb: TestBalancer;
  let port: number;
  const logLines: string[] = [];
  const draining = (): boolean | undefined => lb.balancer.nodes.table.get("n1")?.draining;

  before(async () => {
    ({ lb, port } = await adminBalancer({ adminHost: ["lb1.internal"] }, logLines));
  });
  after(async () => {
    await lb?.close();
  });

  it("answers its own address: IP:PORT, localhost:PORT on loopback, and an HTTP/1.0 request without Host", async () => {
    assert.equal((await request(port, "GET", "/nodes")).status, 200);
    assert.equal((await request(port, "GET", "/metrics", { host: `localhost:${port}` })).status, 200);
    assert.equal((await request(port, "GET", "/nodes", { host: `127.1:${port}` })).status, 200, "another spelling of the same IP");
    assert.match(await rawRequest(port, "GET /nodes HTTP/1.0"), /^HTTP\/1\.1 200 /);
  });

  it("refuses any request whose Host names something else (DNS rebinding), GETs included", async () => {
    for (const [method, urlPath] of [["GET", "/nodes"], ["GET", "/metrics"], ["GET", "/healthz"], ["GET", "/"], ["GET", "/status"], ["POST", "/nodes/n1/drain"]] as const) {
      for (const host of [`attacker.example:${port}`, `127.0.0.1:${port + 1}`, `attacker.example@127.0.0.1:${port}`]) {
        const answer = await request(port, method, urlPath, { host });
        assert.equal(answer.status, 421, `${method} ${urlPath} with Host '${host}'`);
        assert.match(answer.body, /answers only to its own address .* or an --admin-host name/);
      }
    }
    assert.match(await rawRequest(port, "GET /nodes HTTP/1.1\r\nHost: \r\nConnection: close"), /^HTTP\/1\.1 421 /, "an empty Host");
    assert.equal(draining(), false, "the drain was refused");
    assert.equal(refusals(logLines, "host"), 19, "each refusal is logged at info");
    assert.ok(!logLines.some((l) => /"level":(50|60)/.test(l)), "nothing at error level");
  });

  it("serves the status page with its own script and style only, never in a frame, and its JSON", async () => {
    const page = await request(port, "GET", "/");
    assert.equal(page.status, 200);
    assert.equal(page.headers["content-type"], "text/html; charset=utf-8");
    assert.match(String(page.headers["content-security-policy"]), /^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-[A-Za-z0-9+/=]+'; connect-src 'self';.* frame-ancestors 'none'$/);
    assert.equal(page.headers["x-frame-options"], "DENY");
    assert.doesNotMatch(page.body, /<(script|link|img)[^>]+(src|href)="(?!data:)/, "no external asset");
    const status = JSON.parse((await request(port, "GET", "/status")).body) as { nodes: Array<{ id: string; state: string }>; store: { kind: string }; admin: { tokenRequired: boolean } };
    assert.deepEqual(status.nodes.map((n) => n.id), ["n1"]);
    assert.deepEqual(status.store, { kind: "memory", up: true });
    assert.deepEqual(status.admin, { tokenRequired: false });
  });

  it("answers an --admin-host name, at any port, in any case", async () => {
    for (const host of [`lb1.internal:${port}`, "LB1.Internal.:9102", "lb1.internal"]) assert.equal((await request(port, "GET", "/nodes", { host })).status, 200, host);
    assert.equal((await request(port, "GET", "/nodes", { host: `lb2.internal:${port}` })).status, 421);
  });

  it("refuses a POST from another web origin, and takes one from its own origin or from no browser", async () => {
    for (const origin of ["http://127.0.0.2:8080", `http://127.0.0.1:${port + 1}`, `https://127.0.0.1:${port}`, `http://lb1.internal:${port}`, "null"]) {
      const answer = await request(port, "POST", "/nodes/n1/drain", { origin });
      assert.equal(answer.status, 403, origin);
      assert.match(answer.body, /another web origin/);
    }
    assert.equal(draining(), false);
    assert.equal((await request(port, "POST", "/nodes/n1/drain", { origin: `http://127.0.0.1:${port}` })).status, 200);
    assert.equal(draining(), true);
    assert.equal((await request(port, "POST", "/nodes/n1/undrain", { host: `lb1.internal:${port}`, origin: `http://lb1.internal:${port}` })).status, 200, "its own origin by its --admin-host name");
    assert.equal((await request(port, "POST", "/nodes/n1/drain")).status, 200, "no Origin: curl, a script");
    assert.equal((await request(port, "POST", "/nodes/n1/undrain")).status, 200);
    assert.equal(draining(), false);
  });
});

describe("the admin endpoint with --admin-token", () => {
  let lb: TestBalancer;
  let port: number;

  before(async () => {
    ({ lb, port } = await adminBalancer({ adminToken: TOKEN }));
  });
  after(async () => {
    await lb?.close();
  });

  it("refuses a POST without the bearer token (401), takes it with the token, and GETs need none", async () => {
    for (const authorization of [undefined, "Bearer wrong", `Bearer ${TOKEN}x`, `Basic ${Buffer.from(`admin:${TOKEN}`).toString("base64")}`, TOKEN]) {
      const answer = await request(port, "POST", "/nodes/n1/drain", authorization === undefined ? {} : { authorization });
      assert.equal(answer.status, 401, String(authorization));
      assert.match(String(answer.headers["www-authenticate"]), /^Bearer /);
    }
    assert.equal(lb.balancer.nodes.table.get("n1")?.draining, false);
    assert.equal((await request(port, "POST", "/nodes/n1/drain", { authorization: `Bearer ${TOKEN}` })).status, 200);
    assert.equal(lb.balancer.nodes.table.get("n1")?.draining, true);
    assert.equal((await request(port, "POST", "/nodes/n1/undrain", { authorization: `bearer ${TOKEN}`, origin: `http://127.0.0.1:${port}` })).status, 200);
    assert.equal((await request(port, "POST", "/nodes/n1/drain", { authorization: `Bearer ${TOKEN}`, origin: "http://127.0.0.2:8080" })).status, 403, "the token does not let another origin in");
    assert.equal((await request(port, "GET", "/metrics")).status, 200);
    assert.equal((await request(port, "GET", "/nodes")).status, 200);
  });
});

describe("the admin flags from the command line", () => {
  let child: ChildProcess | undefined;
  let dir: string | undefined;
  after(async () => {
    child?.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reads admin-host from a --config file and the token from XMPP_LB_ADMIN_TOKEN_FILE", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-admin-"));
    const config = path.join(dir, "lb.json");
    const tokenFile = path.join(dir, "admin-token");
    await writeFile(config, JSON.stringify({ listen: ["127.0.0.1:0"], domain: ["lb.test"], "allow-plaintext": true, node: [NODE], metrics: "127.0.0.1:0", "admin-host": ["lb1.internal"] }));
    await writeFile(tokenFile, `${TOKEN}\n`);
    const run = runCli(["--config", config], { XMPP_LB_ADMIN_TOKEN_FILE: tokenFile });
    child = run.child;
    let port = 0;
    await waitFor("the admin endpoint's log line", () => {
      port = Number(/"address":\{"host":"[^"]+","port":(\d+)\},"msg":"admin endpoint/.exec(run.stdout())?.[1] ?? 0);
      return port !== 0;
    }, 15_000);
    assert.equal((await request(port, "GET", "/nodes", { host: `lb1.internal:${port}` })).status, 200);
    assert.equal((await request(port, "POST", "/nodes/n1/drain")).status, 401);
    assert.equal((await request(port, "POST", "/nodes/n1/drain", { authorization: `Bearer ${TOKEN}` })).status, 200);
    child.kill("SIGTERM");
    assert.equal((await run.done).code, 0);
  });
});

/** What a web page may try: send the browser to the admin endpoint (the request goes out even when its answer cannot be read). */
const ATTACK_PAGE = `<!doctype html><meta charset="utf-8"><title>page</title><script>
  fetch(new URLSearchParams(location.search).get("target"), { method: "POST", mode: "no-cors" })
    .then(() => (document.title = "sent"), (e) => (document.title = "error: " + e.message));
</script>`;

describe("a web page in a real browser", { skip: chromiumMissing }, () => {
  let lb: TestBalancer;
  let port: number;
  let page: http.Server;
  let chromium: Chromium;
  const logLines: string[] = [];

  before(async () => {
    ({ lb, port } = await adminBalancer({}, logLines));
    page = http.createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(ATTACK_PAGE));
    // Another loopback address and port: another origin, one the browser lets reach 127.0.0.1.
    await new Promise<void>((resolve) => page.listen(0, "127.0.0.2", resolve));
    chromium = await launchChromium();
  });
  after(async () => {
    await chromium?.close();
    await new Promise((r) => page?.close(r));
    await lb?.close();
  });

  it("cannot drain a node with a no-cors POST from another origin", async () => {
    const tab = await chromium.browser.newPage();
    const target = `http://127.0.0.1:${port}/nodes/n1/drain`;
    await tab.goto(`http://127.0.0.2:${(page.address() as net.AddressInfo).port}/?target=${encodeURIComponent(target)}`);
    await tab.waitForFunction(() => document.title !== "page", undefined, { timeout: 20_000 });
    assert.equal(await tab.title(), "sent", "the browser sent the POST");
    const nodes = JSON.parse((await request(port, "GET", "/nodes")).body) as { nodes: Array<{ id: string; state: string; draining: boolean }> };
    assert.equal(nodes.nodes.find((n) => n.id === "n1")?.draining, false, "n1 was drained by a web page");
    assert.equal(refusals(logLines, "origin"), 1, "the endpoint refused the page's POST");
  });
});
