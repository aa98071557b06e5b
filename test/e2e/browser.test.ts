import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { xml, type Client } from "@xmpp/client";
import { chromium, type BrowserContext } from "playwright-core";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const PASSWORD = "browser pass";
const XMPP_JS = readFileSync(new URL("../../node_modules/@xmpp/client/dist/xmpp.min.js", import.meta.url));

/** The web client: xmpp.js's browser build logs in over the balancer's WebSocket listener and answers a ping message. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>web client</title><script src="/xmpp.min.js"></script><script>
  const params = new URLSearchParams(location.search);
  const { client, xml } = window.XMPP;
  const xmpp = client({ service: params.get("service"), domain: "lb.test", username: params.get("user"), password: params.get("password"), resource: "browser" });
  xmpp.on("error", (e) => (document.title = "error: " + e.message));
  xmpp.on("stanza", async (s) => {
    if (s.is("message") && s.getChildText("body") === "ping") {
      await xmpp.send(xml("message", { to: s.attrs.from, type: "chat" }, xml("body", {}, "pong from the browser")));
    }
  });
  xmpp.on("online", async (jid) => {
    await xmpp.send(xml("presence"));
    document.title = "online " + jid.toString();
  });
  xmpp.start().catch((e) => (document.title = "error: " + e.message));
</script>`;

/** A real browser (Debian's Chromium, driven by playwright-core) through the WebSocket listener, beside a TCP client of the same account. */
describe("a web client in a real browser", { skip: existsSync(CHROMIUM) ? false : `no ${CHROMIUM} (apt-get install chromium)` }, () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  let page: http.Server;
  let browser: BrowserContext;
  let profile: string;
  const clients: Client[] = [];

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, websocket: true, users: [["webby", PASSWORD]] });
    lb = await startBalancer({ listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket"], allowPlaintext: true, mode: "forward", node: nodeFlags(cluster.nodes) });
    page = http.createServer((req, res) => {
      if (req.url === "/xmpp.min.js") res.writeHead(200, { "content-type": "text/javascript" }).end(XMPP_JS);
      else res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
    });
    await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
    profile = await mkdtemp(path.join(os.tmpdir(), "xmpp-lb-chromium-"));
    // A fresh profile; no background networking (this machine's network is closed to Google's hosts).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
  });
  after(async () => {
    await stopAll(clients);
    await browser?.close();
    await new Promise((r) => page?.close(r));
    await lb?.close();
    await cluster?.stop();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it("logs in over ws:// and exchanges a message with a TCP client of the same account, on the same node", async () => {
    const phone = await login({ port: lb.ports[0]!, username: "webby", password: PASSWORD, resource: "phone" });
    clients.push(phone);
    await phone.send(xml("presence"));
    const tab = await browser.newPage();
    const service = `ws://127.0.0.1:${lb.ports[1]}/xmpp-websocket`;
    await tab.goto(`http://127.0.0.1:${(page.address() as net.AddressInfo).port}/?service=${encodeURIComponent(service)}&user=webby&password=${encodeURIComponent(PASSWORD)}`);
    await tab.waitForFunction(() => document.title.startsWith("online") || document.title.startsWith("error"), undefined, { timeout: 20_000 });
    assert.equal(await tab.title(), "online webby@lb.test/browser");

    const pong = new Promise<string>((resolve) => phone.on("stanza", (s) => s.is("message") && s.getChildText("body") !== null && resolve(s.getChildText("body")!)));
    await phone.send(xml("message", { to: "webby@lb.test/browser", type: "chat" }, xml("body", {}, "ping")));
    assert.equal(await pong, "pong from the browser", "the message went to the browser tab and back, so both sessions are on one node");
    // The node the TCP session is on is the one the directory gave the browser's session too.
    assert.ok(cluster.nodes.map((n) => n.id).includes(await nodeOf(phone)));
  });
});
