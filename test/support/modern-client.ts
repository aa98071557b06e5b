// A real modern client: @xmpp/client 0.14 logging in with XEP-0388 SASL2,
// XEP-0386 Bind2 (XEP-0198 stream management enabled inline), and XEP-0484
// FAST (a token requested with the password login, then a login with the
// token alone), over TCP (xmpp:// with STARTTLS when offered, xmpps:// direct
// TLS) or XMPP over WebSocket (ws://). Every login records what the server
// offered and what xmpp.js sent, so a test can tell a SASL2+Bind2+FAST login
// from a fallback to SASL1.
//
// How xmpp.js 0.14 does FAST (@xmpp/client-core/src/fast/fast.js, @xmpp/sasl2):
// the SASL2 feature's inline <fast> sets `fast.mechanism` (the first it knows
// of those offered: it knows HT-SHA-256-NONE only); the login then asks
// `credentials.token ??= await fast.fetch()` (fast.fetchToken); a valid token
// (its mechanism offered, its expiry ahead) is tried first, as
// <authenticate mechanism='HT-SHA-256-NONE'> with <fast/> inline and the token
// as the password; if there is none, or the server refuses it (not-authorized,
// credentials-expired), the token is deleted (fast.deleteToken) and the
// password login follows with <request-token mechanism=.../>, whose <token/>
// in the <success/> goes to fast.saveToken({ mechanism, token, expiry }).
// Without an inline <fast> no token is used or asked for.
//
// TLS trust: xmpp.js passes no TLS options (STARTTLS is tls.connect({ socket,
// host: domain })), so the development CA must come from NODE_EXTRA_CA_CERTS
// (as `npm test` sets it).

import { client, xml, type Client } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { randomUUID } from "node:crypto";
import { nodeOf } from "./clients.js";
import { DOMAIN } from "./raw.js";

const NS_SASL2 = "urn:xmpp:sasl:2";
const NS_SASL1 = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND2 = "urn:xmpp:bind:0";
const NS_FAST = "urn:xmpp:fast:0";
const NS_SM = "urn:xmpp:sm:3";
const NS_STREAM = "http://etherx.jabber.org/streams";

/** A FAST token as xmpp.js stores it (fast.saveToken's argument). */
export interface FastToken {
  /** The HT-* mechanism the token was asked for (servers bind it to that mechanism). */
  mechanism: string;
  token: string;
  /** XEP-0082 date-time, e.g. 2025-06-01T12:00:00Z. */
  expiry: string;
}

export interface ModernLoginOptions {
  /** xmpp://host:port (STARTTLS if offered), xmpps://host:port (direct TLS), or ws://host:port/path. */
  service: string;
  /** The stream's `to` (default lb.test). */
  domain?: string;
  username: string;
  password: string;
  resource?: string;
  /**
   * Put from='user@domain' in every stream header, plaintext ones too (default
   * true). xmpp.js 0.14 sends `from` only on TLS streams (RFC 6120 4.7.1); but
   * Prosody advertises FAST only to a stream whose `from` names the user, and
   * ejabberd 24.12 offers SASL2 at all only then.
   */
  announceJid?: boolean;
  /**
   * The SASL2 <user-agent id> (XEP-0388): servers keep a FAST token per account
   * and user-agent id, so a token login must send the id of the login that got
   * the token. Default: a new UUID.
   */
  userAgentId?: string;
  /** xmpp.js's per-step timeout in ms (its default is 2000; 10000 here, as in clients.ts). */
  timeout?: number;
}

/** One SASL attempt on the stream, as sent and answered. */
export interface AuthAttempt {
  profile: "sasl2" | "sasl1";
  mechanism: string;
  /** SASL2: <fast xmlns='urn:xmpp:fast:0'/> inline (a token login). */
  fast: boolean;
  /** SASL2: the mechanism of an inline <request-token/>, else null. */
  requestToken: string | null;
  /** SASL2: <bind xmlns='urn:xmpp:bind:0'> inline. */
  bind2: boolean;
  /** SASL2: <enable xmlns='urn:xmpp:sm:3'/> inside that <bind/>. */
  smEnable: boolean;
  /** SASL2: the <user-agent id> sent. */
  userAgentId: string | null;
  /** "success", or "failure:<condition>" (or "pending" if the stream ended first). */
  verdict: string;
}

export interface LoginReport {
  /** What the server offered in the stream features that carried the login (after TLS, if any). */
  offered: {
    /** <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'> list. */
    sasl1: string[];
    /** <authentication xmlns='urn:xmpp:sasl:2'> list, null if SASL2 was not offered. */
    sasl2: string[] | null;
    /** Bind2's inline feature vars, null if Bind2 was not offered. */
    bind2: string[] | null;
    /** <sm xmlns='urn:xmpp:sm:3'/> inline in SASL2 (resumption at login). */
    smInline: boolean;
    /** FAST's mechanisms, null if FAST was not advertised. */
    fast: string[] | null;
    /** XEP-0440 channel-binding types. */
    channelBindings: string[];
  };
  /** Every SASL attempt, in order (a refused token login is followed by the password login). */
  attempts: AuthAttempt[];
  /** The SASL2 success carried <bound xmlns='urn:xmpp:bind:0'/> (Bind2 bound the resource). */
  bound: boolean;
  /** The SASL2 success carried a FAST <token/>. */
  tokenReceived: boolean;
  /** TLS protocol of the TCP stream ("TLSv1.3", ...), null on plaintext and WebSocket. */
  tls: string | null;
}

export interface ModernSession {
  client: Client;
  /** The full JID bound. */
  jid: string;
  /** The FAST token xmpp.js received (null if none). */
  token: FastToken | null;
  /** The <user-agent id> used: pass it to tokenLogin with the token. */
  userAgentId: string;
  /** XEP-0198 is enabled (through Bind2 inline, or after bind on SASL1), with a resumption id. */
  sm: { enabled: boolean; id: string };
  report: LoginReport;
}

/** A refused or broken login, with what was offered and tried (xmpp.js's error as `cause`). */
export class LoginError extends Error {
  constructor(
    readonly report: LoginReport,
    cause: unknown,
  ) {
    super(`${cause instanceof Error ? cause.message : String(cause)} (attempts: ${report.attempts.map((a) => `${a.profile} ${a.mechanism}${a.fast ? " FAST" : ""}: ${a.verdict}`).join("; ") || "none"})`, { cause });
    this.name = "LoginError";
  }
}

const texts = (el: Element | undefined, name: string): string[] => (el?.getChildren(name) ?? []).map((c) => c.text());

function offeredIn(features: Element | undefined): LoginReport["offered"] {
  const sasl2 = features?.getChild("authentication", NS_SASL2);
  const inline = sasl2?.getChild("inline");
  const bind = inline?.getChild("bind", NS_BIND2);
  const fast = inline?.getChild("fast", NS_FAST);
  return {
    sasl1: texts(features?.getChild("mechanisms", NS_SASL1), "mechanism"),
    sasl2: sasl2 === undefined ? null : texts(sasl2, "mechanism"),
    bind2: bind === undefined ? null : (bind.getChild("inline")?.getChildren("feature") ?? []).map((f) => String(f.attrs.var)),
    smInline: inline?.getChild("sm", NS_SM) !== undefined,
    fast: fast === undefined ? null : texts(fast, "mechanism"),
    channelBindings: (features?.getChild("sasl-channel-binding", "urn:xmpp:sasl-cb:0")?.getChildren("channel-binding") ?? []).map((c) => String(c.attrs.type)),
  };
}

/** Builds the client, with the recording and the FAST token store; `start()` is the caller's. */
function build(opts: ModernLoginOptions, stored: FastToken | null): { xmpp: Client; report: LoginReport; userAgentId: string; saved: () => FastToken | null } {
  const domain = opts.domain ?? DOMAIN;
  const userAgentId = opts.userAgentId ?? randomUUID();
  // `userAgent` is xmpp.js's own option (the typings in test/types/ predate it). Without it xmpp.js makes a new random
  // <user-agent id> per client(), and servers key FAST tokens by that id: a token login on a new client must reuse it.
  const options = {
    service: opts.service,
    domain,
    username: opts.username,
    password: opts.password,
    resource: opts.resource,
    userAgent: xml("user-agent", { id: userAgentId }, xml("software", {}, "xmpp-lb tests")),
  };
  const xmpp = client(options);
  (xmpp as unknown as { timeout: number }).timeout = opts.timeout ?? 10_000;
  xmpp.reconnect.stop();
  if (opts.announceJid !== false) {
    // xmpp.js adds `from` only when the stream is secure (Client.header); FAST (Prosody) and SASL2 (ejabberd) need it on plaintext too.
    const header = xmpp.headerElement.bind(xmpp);
    xmpp.headerElement = () => {
      const el = header();
      el.attrs.from = `${opts.username}@${domain}`;
      return el;
    };
  }

  let token: FastToken | null = stored;
  let saved: FastToken | null = null;
  const { fast } = xmpp as unknown as {
    fast: { fetchToken: () => Promise<FastToken | null>; saveToken: (t: FastToken) => Promise<void>; deleteToken: () => Promise<void> };
  };
  // The README of @xmpp/client-core/src/fast names `removeToken`; the code calls deleteToken.
  fast.fetchToken = async () => token;
  fast.saveToken = async (t) => {
    token = saved = t;
  };
  fast.deleteToken = async () => {
    token = null;
  };

  const report: LoginReport = {
    offered: offeredIn(undefined),
    attempts: [],
    bound: false,
    tokenReceived: false,
    tls: null,
  };
  let features: Element | undefined;
  xmpp.on("element", (el: Element) => {
    if (el.is("features", NS_STREAM)) {
      // The features before the login (post-auth features carry no SASL).
      if (report.attempts.length === 0) features = el;
      return;
    }
    const attempt = report.attempts.at(-1);
    if (attempt === undefined || attempt.verdict !== "pending") return;
    const ns = attempt.profile === "sasl2" ? NS_SASL2 : NS_SASL1;
    if (el.is("success", ns)) {
      attempt.verdict = "success";
      if (attempt.profile === "sasl2") {
        report.bound = el.getChild("bound", NS_BIND2) !== undefined;
        report.tokenReceived = el.getChild("token", NS_FAST) !== undefined;
      }
    } else if (el.is("failure", ns)) {
      const condition = el.getChildElements().find((c) => c.name !== "text")?.name ?? "unknown";
      attempt.verdict = `failure:${condition}`;
    }
  });
  xmpp.on("send", (el: Element) => {
    const sasl2 = el.is("authenticate", NS_SASL2);
    if (!sasl2 && !el.is("auth", NS_SASL1)) return;
    if (report.attempts.length === 0) {
      report.offered = offeredIn(features);
      const socket = (xmpp.socket as unknown as { socket?: { getProtocol?: () => string | null } } | null)?.socket;
      report.tls = socket?.getProtocol?.() ?? null;
    }
    const bind = el.getChild("bind", NS_BIND2);
    report.attempts.push({
      profile: sasl2 ? "sasl2" : "sasl1",
      mechanism: String(el.attrs.mechanism),
      fast: el.getChild("fast", NS_FAST) !== undefined,
      requestToken: (el.getChild("request-token", NS_FAST)?.attrs.mechanism as string | undefined) ?? null,
      bind2: bind !== undefined,
      smEnable: bind?.getChild("enable", NS_SM) !== undefined,
      userAgentId: (el.getChild("user-agent")?.attrs.id as string | undefined) ?? null,
      verdict: "pending",
    });
  });
  xmpp.on("error", () => {});
  return { xmpp, report, userAgentId, saved: () => saved };
}

async function run(opts: ModernLoginOptions, stored: FastToken | null): Promise<ModernSession> {
  // Node 20 has no global WebSocket, which @xmpp/websocket expects: the `ws` package stands in.
  if (opts.service.startsWith("ws")) globalThis.WebSocket ??= (await import("ws")).WebSocket as unknown as typeof globalThis.WebSocket;
  const { xmpp, report, userAgentId, saved } = build(opts, stored);
  try {
    await xmpp.start();
  } catch (err) {
    await xmpp.stop().catch(() => {});
    throw new LoginError(report, err);
  }
  const sm = xmpp.streamManagement as unknown as { enabled: boolean; id: string };
  return {
    client: xmpp,
    jid: xmpp.jid?.toString() ?? "",
    token: saved(),
    userAgentId,
    sm: { enabled: sm.enabled, id: sm.id },
    report,
  };
}

/**
 * Logs in with the password (SASL2 with Bind2, SM enabled inline and a FAST
 * token request when the server offers them; xmpp.js falls back to SASL1 and
 * resource binding otherwise); resolves once the resource is bound. The
 * session's `token` is the FAST token received, if any.
 */
export function modernLogin(opts: ModernLoginOptions): Promise<ModernSession> {
  return run(opts, null);
}

/**
 * Logs in with a FAST token: give it `password: "wrong"` (or any wrong one),
 * so that success proves the token did it (a refused token makes xmpp.js fall
 * back to the password, which then fails). `userAgentId` must be the one of
 * the login that received the token. Rejects with a LoginError if the login
 * fails; its report's attempts show which were tried.
 */
export function tokenLogin(opts: ModernLoginOptions & { token: FastToken; userAgentId: string }): Promise<ModernSession> {
  return run(opts, opts.token);
}

/**
 * Logs `users` in through `service`, one after another, until one holds a
 * session on `node`; returns every session (the caller stops them). With test
 * nodes of `maxconn=1` that node is then full: only a token's memory, or the
 * directory, can still send a login there.
 */
export async function fillNode(service: string, node: string, users: readonly string[], password: string): Promise<ModernSession[]> {
  const sessions: ModernSession[] = [];
  for (const username of users) {
    const s = await modernLogin({ service, username, password });
    sessions.push(s);
    if ((await nodeOf(s.client)) === node) return sessions;
  }
  await Promise.all(sessions.map((s) => s.client.stop().catch(() => {})));
  throw new Error(`no login reached ${node}`);
}
