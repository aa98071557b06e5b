import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { xml } from "@xmpp/xml";
import type { NodeView } from "../../src/cluster/node.js";
import type { StreamErrorCondition } from "../../src/errors.js";
import type { ListenerConfig } from "../../src/listener/listener.js";
import type { RouteDecision } from "../../src/router/router.js";
import { AuthFailures } from "../../src/session/auth-failures.js";
import type { ClientEvent, ClientFrames, ClientInput, ClientLink, HeldInput, NodeLeg, RelayOutcome } from "../../src/session/client-link.js";
import { LoginDialogue, type DialogueSettings } from "../../src/session/dialogue.js";
import { ForwardedLogin } from "../../src/session/forwarded-login.js";
import type { Handoff, HandoffResult, Login } from "../../src/session/handoff.js";
import type { NodeDial } from "../../src/session/node-dialer.js";
import type { LoginOffer } from "../../src/xmpp/login-offer.js";

const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const plain = (user: string, password = "pw"): string => Buffer.from(`\0${user}\0${password}`).toString("base64");
const auth = (user: string, mechanism = "PLAIN") => ({ kind: "element" as const, element: xml("auth", { xmlns: NS_SASL, mechanism }, plain(user)) });
const opening = (to = "lb.test", from?: string): ClientEvent => ({ kind: "open", header: { to, ...(from === undefined ? {} : { from }) }, raw: Buffer.from("<open/>") });

/** Framing stand-in: each chunk the client sends delivers the next event the test queued. */
class FakeFrames implements ClientFrames {
  readonly pending: ClientEvent[] = [];
  private readonly ready: ClientEvent[] = [];
  push(): void {
    const event = this.pending.shift();
    if (event !== undefined) this.ready.push(event);
  }
  next(): ClientEvent | null {
    return this.ready.shift() ?? null;
  }
  takeRest(): Buffer {
    return Buffer.alloc(0);
  }
  restart(): void {}
}

/** A transport stand-in that records what the dialogue says and does. */
class FakeLink implements ClientLink {
  readonly transport = "tcp";
  readonly frames = new FakeFrames();
  readonly client = { address: "192.0.2.7", port: 40000 };
  readonly log = { trace() {}, debug() {}, info() {}, warn() {}, error() {} } as unknown as ClientLink["log"];
  readonly left = new AbortController();
  readonly fromHint = undefined;
  readonly secure = true;
  readonly handshaking = false;
  readonly closeXml = "</stream>";
  sent: string[] = [];
  closedWith: string[] | null = null;
  outcomes: string[] = [];
  refusals: string[] = [];
  errors: string[] = [];
  private input: ClientInput | null = null;
  private unread: Buffer[] = [];
  private holding = false;
  private held: Buffer[] = [];
  private closeHandlers = new Set<() => void>();
  shutdownHandler: () => void = () => {};

  constructor(readonly listener: ListenerConfig) {}

  get leftSignal(): AbortSignal {
    return this.left.signal;
  }
  /** The client sends one event. */
  receive(event: ClientEvent): void {
    this.frames.pending.push(event);
    const chunk = Buffer.from("x");
    if (this.holding) this.held.push(chunk);
    else if (this.input !== null) this.input.data(chunk);
    else this.unread.push(chunk);
  }
  /** The client's connection closes. */
  disconnect(): void {
    this.left.abort();
    for (const handler of this.closeHandlers) handler();
  }
  readWith(input: ClientInput | null): void {
    this.holding = false;
    this.input = input;
    if (input === null) return;
    for (const chunk of this.unread.splice(0)) input.data(chunk);
  }
  hold(): void {
    this.holding = true;
  }
  release(): HeldInput {
    this.holding = false;
    this.input = null;
    return { chunks: this.held.splice(0), ended: false };
  }
  onClosed(handler: () => void): void {
    this.closeHandlers.add(handler);
  }
  offClosed(handler: () => void): void {
    this.closeHandlers.delete(handler);
  }
  onShutdown(handler: () => void): void {
    this.shutdownHandler = handler;
  }
  canStartTls(): boolean {
    return false;
  }
  startTls(): boolean {
    return false;
  }
  openXml(from: string): string {
    return `<open from='${from}'/>`;
  }
  featuresXml(_starttls: string, offer: LoginOffer): string {
    const sasl2 = offer.sasl2 === null ? "" : ` sasl2:${offer.sasl2.mechanisms.join(" ")}`;
    return `<features>${offer.mechanisms.join(" ")}${sasl2}</features>`;
  }
  clientTls(): { certificate: string } {
    return { certificate: "fake" };
  }
  errorParts(condition: StreamErrorCondition): string[] {
    this.errors.push(condition);
    return [`<error>${condition}</error>`, this.closeXml];
  }
  redirectTo(): { to: string; parts: string[] } {
    return { to: "elsewhere", parts: ["<redirect/>"] };
  }
  send(xml: string | Buffer): void {
    this.sent.push(xml.toString());
  }
  close(parts: readonly string[]): void {
    this.closedWith = [...parts];
  }
  destroy(): void {
    this.closedWith = [];
  }
  finish(outcome: string): void {
    if (this.outcomes.length === 0) this.outcomes.push(outcome);
  }
  countRefusal(reason: string): void {
    this.refusals.push(reason);
  }
  rejected(condition: StreamErrorCondition): void {
    this.finish("rejected");
    void condition;
  }
  nodeDial(): NodeDial<NodeLeg> {
    throw new Error("the fake hand-off dials nothing");
  }
  relay(_leg: NodeLeg, _onClose: (outcome: RelayOutcome) => void): void {}
  cutOff(): void {}
}

/** A node side stand-in: the test plays the node's answers. */
class FakeLeg implements NodeLeg {
  readonly tlsRequiredByNode = false;
  readonly features = undefined;
  sent: string[] = [];
  ended = false;
  destroyed = false;
  private watcher: { inspect: (d: Buffer) => boolean; toClient: (d: Buffer) => void; onStop: (closed: boolean) => void } | undefined;
  send(data: Buffer | string): void {
    this.sent.push(data.toString());
  }
  watch(inspect: (d: Buffer) => boolean, toClient: (d: Buffer) => void, onStop: (closed: boolean) => void): void {
    this.watcher = { inspect, toClient, onStop };
  }
  /** The node says `text`. */
  says(text: string): void {
    const w = this.watcher!;
    const data = Buffer.from(text);
    const more = w.inspect(data);
    w.toClient(data);
    if (!more) {
      this.watcher = undefined;
      w.onStop(false);
    }
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

/** What a decision's lease was told. */
function fakeDecision(nodeId = "n1"): RouteDecision & { told: string[] } {
  const told: string[] = [];
  const lease = { redirected: () => told.push("redirected"), opened: () => told.push("opened"), closed: () => told.push("closed"), refused: () => told.push("refused") };
  return { node: { id: nodeId } as NodeView, via: "strategy", lease: lease as unknown as RouteDecision["lease"], told };
}

/** A hand-off that forwards every login to a FakeLeg and records what it was asked. */
class FakeHandoff {
  logins: Login[] = [];
  attempts: Array<{ leg: FakeLeg; decision: ReturnType<typeof fakeDecision> }> = [];
  relayed: ForwardedLogin[] = [];
  refused: Array<string | null> = [];
  next: "forward" | "no-node" = "forward";
  async forward(_link: ClientLink, login: Login): Promise<HandoffResult> {
    this.logins.push(login);
    if (this.next === "no-node") return { outcome: "no-node" };
    const leg = new FakeLeg();
    const decision = fakeDecision();
    this.attempts.push({ leg, decision });
    return { outcome: "authenticating", node: decision.node, attempt: new ForwardedLogin(decision, leg, login.sasl2 === true), held: { chunks: [], ended: false } };
  }
  async redirect(link: ClientLink, login: Login): Promise<HandoffResult> {
    return this.forward(link, login);
  }
  relayAfterLogin(_link: ClientLink, attempt: ForwardedLogin): void {
    this.relayed.push(attempt);
  }
  loginRefused(_link: ClientLink, _attempt: ForwardedLogin, jid: string | null): void {
    this.refused.push(jid);
  }
}

const LISTENER: ListenerConfig = { name: "test", kind: "starttls", host: "127.0.0.1", port: 0, mode: "forward", phase: "login", proxyProtocol: false };
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("LoginDialogue over a fake transport", () => {
  const toClose: AuthFailures[] = [];
  afterEach(() => {
    for (const a of toClose.splice(0)) a.close();
  });
  const start = (overrides: Partial<DialogueSettings> = {}, listener: Partial<ListenerConfig> = {}) => {
    const authFailures = new AuthFailures({ perAddress: 0, perJid: 2, windowMs: 60_000 });
    toClose.push(authFailures);
    const link = new FakeLink({ ...LISTENER, ...listener });
    const handoff = new FakeHandoff();
    const settings: DialogueSettings = { listener: link.listener, domains: new Set(["lb.test"]), loginOffer: () => ({ mechanisms: ["PLAIN"], channelBinding: false, sasl2: null }), allowPlaintext: false, loginTimeoutMs: 60_000, maxPreauthBytes: 65536, authFailures, ...overrides };
    const dialogue = new LoginDialogue(link, settings, handoff as unknown as Handoff);
    return { link, handoff, dialogue, authFailures };
  };

  it("answers an opening with its own and the mechanisms the nodes offer", () => {
    const { link } = start();
    link.receive(opening());
    assert.deepEqual(link.sent, ["<open from='lb.test'/>", "<features>PLAIN</features>"]);
  });

  it("refuses a domain it does not serve with <host-unknown/>, after its own opening (from the domain asked for)", () => {
    const { link } = start();
    link.receive(opening("elsewhere.test"));
    assert.deepEqual(link.errors, ["host-unknown"]);
    assert.deepEqual(link.closedWith, ["<open from='elsewhere.test'/>", "<error>host-unknown</error>", "</stream>"]);
  });

  it("answers a stanza before login with <not-authorized/>, and anything else unexpected with <unsupported-stanza-type/>", () => {
    const a = start();
    a.link.receive(opening());
    a.link.receive({ kind: "element", element: xml("message", { xmlns: "jabber:client" }) });
    assert.deepEqual(a.link.errors, ["not-authorized"]);
    const b = start();
    b.link.receive(opening());
    b.link.receive({ kind: "element", element: xml("presence") });
    assert.deepEqual(b.link.errors, ["not-authorized"], "an unqualified stanza (a WebSocket message) is the client namespace's");
    const c = start();
    c.link.receive(opening());
    c.link.receive({ kind: "element", element: xml("query", { xmlns: "urn:example" }) });
    assert.deepEqual(c.link.errors, ["unsupported-stanza-type"]);
  });

  it("decides at the <auth/> with the JID it names, and hands the node the <auth/> alone", async () => {
    const { link, handoff } = start();
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    assert.equal(handoff.logins.length, 1);
    assert.equal(handoff.logins[0]!.jid, "alice@lb.test");
    assert.equal(handoff.logins[0]!.mechanism, "PLAIN");
    assert.match(handoff.logins[0]!.replay.toString(), /^<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>/);
  });

  it("passes the client's SASL steps to the node during its exchange, and nothing else", async () => {
    const { link, handoff } = start();
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    const { leg } = handoff.attempts[0]!;
    leg.says("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>abc</challenge>");
    assert.ok(link.sent.at(-1)!.startsWith("<challenge"), "the node's challenge reaches the client");
    link.receive({ kind: "element", element: xml("response", { xmlns: NS_SASL }, "def") });
    assert.deepEqual(leg.sent, [`<response xmlns='${NS_SASL}'>def</response>`]);
    link.receive({ kind: "element", element: xml("starttls", { xmlns: "urn:ietf:params:xml:ns:xmpp-tls" }) });
    assert.deepEqual(link.errors, ["unsupported-stanza-type"]);
    assert.equal(leg.destroyed, true, "the node stream goes with the dialogue");
    assert.deepEqual(handoff.attempts[0]!.decision.told, ["refused"], "and so does the claim it made");
  });

  it("refuses a new opening while a node runs the login", async () => {
    const { link, handoff } = start();
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    link.receive(opening());
    assert.deepEqual(link.errors, ["unsupported-stanza-type"]);
    assert.equal(handoff.attempts[0]!.leg.destroyed, true);
  });

  it("hands the client to the relay at the node's <success/>, and not before", async () => {
    const { link, handoff } = start();
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    assert.deepEqual(link.outcomes, [], "no outcome while the node decides");
    handoff.attempts[0]!.leg.says("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert.equal(handoff.relayed.length, 1);
    assert.deepEqual(link.outcomes, ["forwarded"]);
    assert.equal(link.sent.at(-1), "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
  });

  it("takes the client back at the node's <failure/>: the next <auth/> is a login of its own, checked against the limits", async () => {
    const { link, handoff, authFailures } = start();
    link.receive(opening());
    link.receive(auth("decoy"));
    await settle();
    handoff.attempts[0]!.leg.says("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
    assert.equal(handoff.attempts[0]!.leg.ended, true, "the refusing node's stream is ended");
    assert.deepEqual(handoff.refused, ["decoy@lb.test"]);
    assert.ok(link.sent.at(-1)!.startsWith("<failure"), "the client reads the node's failure");
    link.receive(auth("mallory"));
    await settle();
    assert.deepEqual(handoff.logins.map((l) => l.jid), ["decoy@lb.test", "mallory@lb.test"], "routed by its own JID");
    // Past the per-JID limit, an attempt is refused before any node sees it.
    authFailures.record("198.51.100.1", "bob@lb.test");
    authFailures.record("198.51.100.1", "bob@lb.test");
    handoff.attempts[1]!.leg.says("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
    link.receive(auth("bob"));
    await settle();
    assert.equal(handoff.logins.length, 2, "bob's attempt reached no node");
    assert.deepEqual(link.refusals, ["auth-failures-jid"]);
    assert.deepEqual(link.errors, ["policy-violation"]);
  });

  it("closes the stream after three refused attempts, the nodes' refusals counted with its own", async () => {
    const { link, handoff } = start();
    link.receive(opening());
    link.receive({ kind: "element", element: xml("auth", { xmlns: NS_SASL, mechanism: "X-UNKNOWN" }) });
    link.receive(auth("a"));
    await settle();
    handoff.attempts[0]!.leg.says("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
    assert.deepEqual(link.errors, []);
    link.receive(auth("b"));
    await settle();
    handoff.attempts[1]!.leg.says("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
    assert.deepEqual(link.errors, ["policy-violation"]);
  });

  it("answers <temporary-auth-failure/> when no node can take the login, and keeps the stream open for a retry", async () => {
    const { link, handoff } = start();
    handoff.next = "no-node";
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    assert.match(link.sent.at(-1)!, /<temporary-auth-failure\/>/);
    assert.equal(link.closedWith, null);
    handoff.next = "forward";
    link.receive(auth("alice"));
    await settle();
    assert.equal(handoff.attempts.length, 1);
  });

  it("closes with <remote-connection-failed/> when no node can take a login decided at the opening (phase open)", async () => {
    const { link, handoff } = start({}, { phase: "open" });
    handoff.next = "no-node";
    link.receive(opening("lb.test", "alice@lb.test"));
    await settle();
    assert.equal(handoff.logins[0]!.jid, "alice@lb.test");
    assert.equal(handoff.logins[0]!.mechanism, undefined);
    assert.deepEqual(link.errors, ["remote-connection-failed"]);
    assert.equal(link.closedWith![0], "<open from='lb.test'/>", "its opening comes first: none was sent yet");
  });

  it("ends a login that takes too long with <connection-timeout/>, dropping an attempt still with its node", async () => {
    const { link, handoff } = start({ loginTimeoutMs: 50 });
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(link.errors, ["connection-timeout"]);
    assert.equal(handoff.attempts[0]!.leg.destroyed, true);
    assert.deepEqual(handoff.attempts[0]!.decision.told, ["refused"]);
  });

  it("drops an attempt still with its node when the client goes", async () => {
    const { link, handoff } = start();
    link.receive(opening());
    link.receive(auth("alice"));
    await settle();
    link.disconnect();
    assert.equal(handoff.attempts[0]!.leg.destroyed, true);
    assert.deepEqual(handoff.attempts[0]!.decision.told, ["refused"]);
  });

  it("tells a client in the dialogue that the service is shutting down", () => {
    const { link } = start();
    link.receive(opening());
    link.shutdownHandler();
    assert.deepEqual(link.errors, ["system-shutdown"]);
  });

  it("refuses more than the pre-auth bytes with <policy-violation/>", () => {
    const { link } = start({ maxPreauthBytes: 2 });
    link.receive(opening());
    link.receive({ kind: "element", element: xml("abort", { xmlns: NS_SASL }) });
    link.receive({ kind: "element", element: xml("abort", { xmlns: NS_SASL }) });
    assert.deepEqual(link.errors, ["policy-violation"]);
  });

  describe("SASL2 (XEP-0388)", () => {
    const NS_SASL2 = "urn:xmpp:sasl:2";
    const fast = xml("fast", { xmlns: "urn:xmpp:fast:0" }, xml("mechanism", {}, "HT-SHA-256-NONE"));
    const modern: Partial<DialogueSettings> = {
      loginOffer: () => ({ mechanisms: ["PLAIN", "SCRAM-SHA-1"], channelBinding: false, sasl2: { mechanisms: ["PLAIN", "SCRAM-SHA-1"], inline: xml("inline", {}, fast) } }),
    };
    const authenticate = (mechanism: string, payload: string | undefined, ...extra: ReturnType<typeof xml>[]) => ({
      kind: "element" as const,
      element: xml("authenticate", { xmlns: NS_SASL2, mechanism }, ...(payload === undefined ? [] : [xml("initial-response", {}, payload)]), ...extra),
    });
    const userAgent = xml("user-agent", { id: "d4565fa7-4d72-4749-b3d3-740edbf87770" }, xml("software", {}, "tests"));
    const bind = xml("bind", { xmlns: "urn:xmpp:bind:0" }, xml("tag", {}, "phone"));

    it("decides at the <authenticate/> and hands the node the client's own, user agent and inline requests included", async () => {
      const { link, handoff } = start(modern);
      link.receive(opening());
      assert.equal(link.sent[1], "<features>PLAIN SCRAM-SHA-1 sasl2:PLAIN SCRAM-SHA-1</features>");
      link.receive(authenticate("PLAIN", plain("alice"), userAgent, bind));
      await settle();
      const login = handoff.logins[0]!;
      assert.equal(login.jid, "alice@lb.test");
      assert.equal(login.sasl2, true);
      assert.equal(login.token, false);
      const replay = login.replay.toString();
      assert.match(replay, /^<authenticate xmlns="urn:xmpp:sasl:2" mechanism="PLAIN"><initial-response>/);
      assert.match(replay, /<user-agent id="d4565fa7-4d72-4749-b3d3-740edbf87770"><software>tests<\/software><\/user-agent><bind xmlns="urn:xmpp:bind:0"><tag>phone<\/tag><\/bind>/);
    });

    it("routes a FAST token login by the user before the NUL, as a token login", async () => {
      const { link, handoff } = start(modern);
      link.receive(opening());
      const hmac = Buffer.from([0, 1, 2, 255, 0, 9]);
      link.receive(authenticate("HT-SHA-256-NONE", Buffer.concat([Buffer.from("bob\0"), hmac]).toString("base64"), userAgent, xml("fast", { xmlns: "urn:xmpp:fast:0" })));
      await settle();
      assert.equal(handoff.logins[0]!.jid, "bob@lb.test");
      assert.equal(handoff.logins[0]!.token, true);
    });

    it("refuses a token mechanism FAST did not offer, and SASL2 where the nodes do not speak it, with SASL2's own failure", async () => {
      const a = start(modern);
      a.link.receive(opening());
      a.link.receive(authenticate("HT-SHA-256-EXPR", Buffer.from("bob\0x").toString("base64")));
      assert.equal(a.link.sent.at(-1), `<failure xmlns='${NS_SASL2}'><invalid-mechanism xmlns='${NS_SASL}'/><text xml:lang='en'>mechanism 'HT-SHA-256-EXPR' is not offered</text></failure>`);
      const b = start();
      b.link.receive(opening());
      b.link.receive(authenticate("PLAIN", plain("alice")));
      assert.match(b.link.sent.at(-1)!, /^<failure xmlns='urn:xmpp:sasl:2'><invalid-mechanism/);
      assert.equal(b.handoff.logins.length, 0);
    });

    it("asks for a missing initial response with SASL2's empty challenge, then forwards it inside the <authenticate/>", async () => {
      const { link, handoff } = start(modern);
      link.receive(opening());
      link.receive(authenticate("PLAIN", undefined, userAgent));
      assert.equal(link.sent.at(-1), `<challenge xmlns='${NS_SASL2}'/>`);
      link.receive({ kind: "element", element: xml("response", { xmlns: NS_SASL2 }, plain("carol")) });
      await settle();
      assert.equal(handoff.logins[0]!.jid, "carol@lb.test");
      assert.match(handoff.logins[0]!.replay.toString(), new RegExp(`^<authenticate xmlns="urn:xmpp:sasl:2" mechanism="PLAIN"><initial-response>${plain("carol").replace(/[+/]/g, "\\$&")}</initial-response><user-agent`));
    });

    it("passes SASL2 responses and aborts to the node in SASL2's namespace", async () => {
      const { link, handoff } = start(modern);
      link.receive(opening());
      link.receive(authenticate("SCRAM-SHA-1", Buffer.from("n,,n=alice,r=abc").toString("base64")));
      await settle();
      const { leg } = handoff.attempts[0]!;
      leg.says(`<challenge xmlns='${NS_SASL2}'>abc</challenge>`);
      link.receive({ kind: "element", element: xml("response", { xmlns: NS_SASL2 }, "def") });
      link.receive({ kind: "element", element: xml("abort", { xmlns: NS_SASL2 }) });
      assert.deepEqual(leg.sent, [`<response xmlns='${NS_SASL2}'>def</response>`, `<abort xmlns='${NS_SASL2}'/>`]);
    });
  });
});
