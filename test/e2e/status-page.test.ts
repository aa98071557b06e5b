import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Client } from "@xmpp/client";
import type { Page } from "playwright-core";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { chromiumMissing, launchChromium, type Chromium } from "../support/chromium.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { ROOT } from "../support/cli.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";
import { RawXmpp } from "../support/raw.js";
import { VERSION } from "../../src/version.js";

const PASSWORD = "status page pass";
const TOKEN = "page-Admin_token";
const HEALTH_INTERVAL_S = 1;
/** How often the page fetches /status (src/control/status-page.ts). */
const PAGE_REFRESH_S = 2;
/** Kept for a person to look at; `.tmp/` is not committed. */
const SCREENSHOT = path.join(ROOT, ".tmp", "artifacts", "status-page.png");

/** What the nodes show besides their addresses: zone, weight and maxconn, as the page lists them. */
const EXTRAS: Record<string, { zone: string; weight: string; maxconn: string }> = {
  n1: { zone: "eu-1", weight: "2", maxconn: "-" },
  n2: { zone: "eu-2", weight: "1", maxconn: "500" },
  n3: { zone: "eu-1", weight: "1", maxconn: "-" },
};
const nodeExtras = (id: string): string => {
  const { zone, weight, maxconn } = EXTRAS[id]!;
  return `,zone=${zone},weight=${weight}${maxconn === "-" ? "" : `,maxconn=${maxconn}`}`;
};

/** The page's own errors: a script error, or a Content-Security-Policy violation (which the console reports). */
function collectErrors(tab: Page): string[] {
  const errors: string[] = [];
  tab.on("pageerror", (err) => errors.push(err.message));
  tab.on("console", (message) => void (message.type() === "error" && errors.push(message.text())));
  return errors;
}

const row = (tab: Page, id: string) => tab.locator(`#nodes tr[data-node="${id}"]`);

async function waitForState(tab: Page, id: string, state: string, timeoutMs = 10_000): Promise<void> {
  await tab.locator(`#nodes tr[data-node="${id}"][data-state="${state}"]`).waitFor({ timeout: timeoutMs });
}

/** Debian's Chromium on the status page of a balancer in front of three real Prosody nodes. */
describe("the status page in a real browser", { skip: chromiumMissing }, () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  let chromium: Chromium;
  let tab: Page;
  let errors: string[];
  let nodesDir: string;
  let nodesFile: string;
  const clients: Client[] = [];

  before(async () => {
    cluster = await startProsodyCluster({ count: 3, externalPort: 0, users: [["alice", PASSWORD], ["bob", PASSWORD]] });
    // A fourth node from a nodes file (--discover), where nothing listens.
    nodesDir = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-status-page-"));
    nodesFile = path.join(nodesDir, "nodes.json");
    await writeFile(nodesFile, JSON.stringify(["id=f1,internal=127.0.0.1:1"]));
    lb = await startBalancer({
      discover: `file://${nodesFile}`,
      listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket,mode=redirect,phase=open"],
      allowPlaintext: true,
      node: nodeFlags(cluster.nodes).map((flag, i) => flag + nodeExtras(cluster.nodes[i]!.id)),
      metrics: "127.0.0.1:0",
      healthInterval: HEALTH_INTERVAL_S,
      healthFall: 1,
    });
    chromium = await launchChromium();
    tab = await chromium.browser.newPage();
    // Short: the full-page screenshot is as tall as the page's content.
    await tab.setViewportSize({ width: 1280, height: 500 });
    errors = collectErrors(tab);
  });
  after(async () => {
    await stopAll(clients);
    await chromium?.close();
    await lb?.close();
    await cluster?.stop();
    if (nodesDir) await rm(nodesDir, { recursive: true, force: true });
  });

  it("lists the cluster's nodes with their state, source and sessions, and the store, the listeners, the instance and the last minute's rates", async () => {
    const alice = await login({ port: lb.port, username: "alice", password: PASSWORD });
    clients.push(alice);
    const aliceNode = await nodeOf(alice);
    await assert.rejects(login({ port: lb.port, username: "bob", password: "not bob's" }), "a refused password");
    const stray = await RawXmpp.connect(lb.port);
    stray.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.test' version='1.0'>");
    await stray.closed;

    await tab.goto(`http://127.0.0.1:${lb.balancer.adminAddress!.port}/`);
    for (const node of cluster.nodes) await waitForState(tab, node.id, "up");
    await waitForState(tab, "f1", "down");
    assert.deepEqual(await tab.locator("#nodes tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-node"))), ["n1", "n2", "n3", "f1"]);
    assert.deepEqual((await row(tab, "f1").locator("td").allInnerTexts()).slice(1, 3), ["down", "file"]);
    assert.equal(await row(tab, "f1").getByRole("button").count(), 0, "a discovered node is drained at its source, not here");
    assert.match(await row(tab, "f1").innerText(), /drain in the file/);
    assert.deepEqual(await tab.locator("#discovery tbody tr").evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll("td")].map((c) => c.textContent))), [[`file://${nodesFile}`, "up", "1"]]);
    const cells = await row(tab, aliceNode).locator("td").allInnerTexts();
    const node = cluster.nodes.find((n) => n.id === aliceNode)!;
    // node, state, source, zone, weight, domains, maxconn, sessions, forwarded, internal, external, action
    const { zone, weight, maxconn } = EXTRAS[aliceNode]!;
    assert.deepEqual(cells.slice(0, 11), [aliceNode, "up", "static", zone, weight, "all", maxconn, "1", "1", `${node.internal.host}:${node.internal.port}`, `${node.external.host}:${node.external.port}`]);
    assert.equal(await row(tab, aliceNode).getByRole("button").innerText(), "Drain");

    const rate = async (name: string): Promise<number> => Number(await tab.locator(`#rates [data-rate="${name}"] dd`).innerText());
    assert.ok((await rate("forwards")) >= 1, "alice's login in the last minute");
    assert.ok((await rate("authFailures")) >= 1, "bob's refused password");
    assert.ok((await rate("logins")) >= 2);
    assert.match(await tab.locator("#stream-errors").innerText(), /host-unknown/);
    assert.match(await tab.locator("#store").innerText(), /up\s+memory/);
    const listeners = await tab.locator("#listeners tbody tr").evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll("td")].map((c) => c.textContent)));
    assert.deepEqual(listeners, [
      [`127.0.0.1:${lb.ports[0]}`, "forward at login", "no"],
      [`ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket`, "redirect at open", "no"],
    ]);
    assert.match(await tab.locator("#instance").innerText(), new RegExp(`version ${VERSION.replaceAll(".", "\\.")} · up \\d+s · 1 process`));
    assert.equal(await tab.locator("#token-box").isVisible(), false, "no token is configured");
    assert.deepEqual(errors, [], "no script error and no Content-Security-Policy violation");
  });

  it("shows a node killed as down within the health interval (and the page's refresh)", async (t) => {
    const n3 = cluster.nodes.find((n) => n.id === "n3")!;
    const killed = Date.now();
    await n3.kill("SIGKILL");
    await waitForState(tab, "n3", "down");
    const seconds = (Date.now() - killed) / 1000;
    t.diagnostic(`n3 shown down ${seconds.toFixed(2)} s after it was killed`);
    assert.ok(seconds <= HEALTH_INTERVAL_S + PAGE_REFRESH_S + 1, `shown down after ${seconds} s`);
    assert.equal(lb.balancer.nodes.table.get("n3")?.state, "down");
  });

  it("drains and undrains a node with its buttons, and keeps a screenshot", async (t) => {
    await row(tab, "n2").getByRole("button", { name: "drain n2" }).click();
    await waitForState(tab, "n2", "draining");
    assert.equal(lb.balancer.nodes.table.get("n2")?.draining, true);
    assert.match(await tab.locator("#action").innerText(), /n2 drained/);
    await row(tab, "n2").getByRole("button", { name: "undrain n2" }).click();
    await waitForState(tab, "n2", "up");
    assert.equal(lb.balancer.nodes.table.get("n2")?.draining, false);

    // The picture: a node with a session, one draining, one down, and a discovered one.
    await row(tab, "n2").getByRole("button", { name: "drain n2" }).click();
    await waitForState(tab, "n2", "draining");
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await tab.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);
    assert.deepEqual(errors, []);
  });
});

describe("the status page's drain button with --admin-token", { skip: chromiumMissing }, () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  let chromium: Chromium;

  before(async () => {
    cluster = await startProsodyCluster({ count: 1, externalPort: 0 });
    lb = await startBalancer({ allowPlaintext: true, node: nodeFlags(cluster.nodes), metrics: "127.0.0.1:0", adminToken: TOKEN });
    chromium = await launchChromium();
  });
  after(async () => {
    await chromium?.close();
    await lb?.close();
    await cluster?.stop();
  });

  it("is refused without the token, and drains once the token is typed in", async () => {
    const tab = await chromium.browser.newPage();
    const errors = collectErrors(tab);
    await tab.goto(`http://127.0.0.1:${lb.balancer.adminAddress!.port}/`);
    await waitForState(tab, "n1", "up");
    assert.equal(await tab.locator("#token-box").isVisible(), true, "the page asks for the token");

    await row(tab, "n1").getByRole("button", { name: "drain n1" }).click();
    await tab.locator("#action.bad").waitFor();
    assert.match(await tab.locator("#action").innerText(), /drain n1 refused: drain and undrain need the admin token/);
    assert.equal(lb.balancer.nodes.table.get("n1")?.draining, false, "not drained without the token");

    await tab.locator("#token").fill(TOKEN);
    await row(tab, "n1").getByRole("button", { name: "drain n1" }).click();
    await waitForState(tab, "n1", "draining");
    assert.equal(lb.balancer.nodes.table.get("n1")?.draining, true);
    // The browser's 401 is its console's error: the one expected.
    assert.deepEqual(errors.filter((e) => !/401 \(Unauthorized\)/.test(e)), []);
  });
});
