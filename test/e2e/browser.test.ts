import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import type net from "node:net";
import { after, before, describe, it } from "node:test";
import { xml, type Client } from "@xmpp/client";
import type { BrowserContext } from "playwright-core";
import { startBalancer, type TestBalancer } from "../support/balancer.js";
import { chromiumMissing, launchChromium, type Chromium } from "../support/chromium.js";
import { login, nodeOf, stopAll } from "../support/clients.js";
import { nodeFlags, startProsodyCluster, type ProsodyCluster } from "../support/prosody.js";

const PASSWORD = "browser pass";
const XMPP_JS = readFileSync(new URL("../../node_modules/@xmpp/client/dist/xmpp.min.js", import.meta.url));
const STROPHE_JS = readFileSync(new URL("../../node_modules/strophe.js/dist/strophe.umd.min.js", import.meta.url));

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

/**
 * The second web client: Strophe.js (what Converse.js is built on), which follows a see-other-uri
 * <close/> sent in answer to its <open/>. It names its account in the service URL (?from=) so the
 * balancer can redirect it there, in phase open; then it logs in at the node and answers a ping.
 */
const STROPHE_PAGE = `<!doctype html><meta charset="utf-8"><title>strophe</title><script src="/strophe.js"></script><script>
  const params = new URLSearchParams(location.search);
  const jid = params.get("user") + "@lb.test/strophe";
  const service = params.get("service") + "?from=" + encodeURIComponent(params.get("user") + "@lb.test");
  const connection = new Strophe.Connection(service);
  window.redirects = 0;
  connection.connect(jid, params.get("password"), (status, condition) => {
    if (status === Strophe.Status.REDIRECT) window.redirects += 1;
    if (status === Strophe.Status.CONNECTED) {
      connection.addHandler((message) => {
        const body = message.getElementsByTagName("body")[0];
        if (body && body.textContent === "ping") connection.send($msg({ to: message.getAttribute("from"), type: "chat" }).c("body").t("pong from strophe"));
        return true;
      }, null, "message");
      connection.send($pres());
      window.service = connection.service;
      document.title = "online " + connection.jid;
    }
    if (status === Strophe.Status.CONNFAIL || status === Strophe.Status.AUTHFAIL) document.title = "error: " + status + " " + condition;
  });
</script>`;

/** A real browser (Debian's Chromium, driven by playwright-core) through the WebSocket listener, beside a TCP client of the same account. */
describe("a web client in a real browser", { skip: chromiumMissing }, () => {
  let cluster: ProsodyCluster;
  let lb: TestBalancer;
  let page: http.Server;
  let chromium: Chromium;
  let browser: BrowserContext;
  const clients: Client[] = [];

  before(async () => {
    cluster = await startProsodyCluster({ count: 2, externalPort: 0, websocket: true, users: [["webby", PASSWORD], ["tabby", PASSWORD], ["pebby", PASSWORD]] });
    lb = await startBalancer({
      listen: ["127.0.0.1:0", "ws://127.0.0.1:0/xmpp-websocket", "ws://127.0.0.1:0/xmpp-websocket,mode=redirect,phase=open"],
      allowPlaintext: true,
      mode: "forward",
      strategy: "random",
      node: nodeFlags(cluster.nodes),
    });
    page = http.createServer((req, res) => {
      if (req.url === "/xmpp.min.js") res.writeHead(200, { "content-type": "text/javascript" }).end(XMPP_JS);
      else if (req.url === "/strophe.js") res.writeHead(200, { "content-type": "text/javascript" }).end(STROPHE_JS);
      else if (req.url?.startsWith("/strophe")) res.writeHead(200, { "content-type": "text/html" }).end(STROPHE_PAGE);
      else res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
    });
    await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
    chromium = await launchChromium();
    browser = chromium.browser;
  });
  after(async () => {
    await stopAll(clients);
    await chromium?.close();
    await new Promise((r) => page?.close(r));
    await lb?.close();
    await cluster?.stop();
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

  for (const first of ["tcp", "browser"] as const) {
    it(`redirects Strophe.js (see-other-uri at <open/>) to the node of its account's TCP session (${first} first), where they exchange a message`, async () => {
      const user = first === "tcp" ? "tabby" : "pebby";
      const viaTcp = async (): Promise<Client> => {
        const phone = await login({ port: lb.ports[0]!, username: user, password: PASSWORD, resource: "phone" });
        clients.push(phone);
        await phone.send(xml("presence"));
        return phone;
      };
      const viaBrowser = async (): Promise<{ redirects: number; service: string }> => {
        const tab = await browser.newPage();
        const service = `ws://127.0.0.1:${lb.ports[2]}/xmpp-websocket`;
        await tab.goto(`http://127.0.0.1:${(page.address() as net.AddressInfo).port}/strophe?service=${encodeURIComponent(service)}&user=${user}&password=${encodeURIComponent(PASSWORD)}`);
        await tab.waitForFunction(() => document.title.startsWith("online") || document.title.startsWith("error"), undefined, { timeout: 20_000 });
        assert.equal(await tab.title(), `online ${user}@lb.test/strophe`);
        return await tab.evaluate(() => {
          const state = window as unknown as { redirects: number; service: string };
          return { redirects: state.redirects, service: state.service };
        });
      };
      let phone: Client;
      let tab: { redirects: number; service: string };
      if (first === "tcp") {
        phone = await viaTcp();
        tab = await viaBrowser();
      } else {
        tab = await viaBrowser();
        phone = await viaTcp();
      }
      const node = await nodeOf(phone);
      assert.deepEqual(tab, { redirects: 1, service: cluster.nodes.find((n) => n.id === node)!.websocket!.external }, "one redirect, to the node of the account");
      const pong = new Promise<string>((resolve) => phone.on("stanza", (s) => s.is("message") && s.getChildText("body") !== null && resolve(s.getChildText("body")!)));
      await phone.send(xml("message", { to: `${user}@lb.test/strophe`, type: "chat" }, xml("body", {}, "ping")));
      assert.equal(await pong, "pong from strophe");
    });
  }
});
