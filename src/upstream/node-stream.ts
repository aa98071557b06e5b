import net from "node:net";
import tls from "node:tls";
import type { Element } from "@xmpp/xml";
import type { HostPort } from "../cluster/address.js";
import { StreamError, UpstreamError } from "../errors.js";
import { NS_SASL, NS_STREAM, NS_STREAMS, NS_TLS } from "../xmpp/namespaces.js";
import { StreamReader } from "../xmpp/stream-reader.js";
import { clientStreamOpenXml } from "../xmpp/stream-header.js";

export interface NodeDialOptions {
  domain: string;
  /**
   * STARTTLS to the node before anything of the client's is sent: `always`
   * (--backend-tls), or only `when-required` by the node (its STARTTLS is
   * `<required/>`, or it offers no SASL mechanism without it).
   */
  tls: "always" | "when-required";
  /** CA for the node's certificate; without it the certificate is not verified (trusted network). */
  ca?: Buffer;
  timeoutMs: number;
  maxHeaderBytes: number;
  /** Open an XMPP stream and read the node's features (login phase, health probes). */
  openStream: boolean;
}

export interface NodeConnection {
  socket: net.Socket;
  /** The node's `<stream:features/>` when a stream was opened. */
  features?: Element;
  /** Bytes the node sent after its features (normally none): they belong to the client. */
  leftover: Buffer;
  /** Whether TLS was used because the node required it (not asked for). */
  tlsRequiredByNode: boolean;
}

/** A node that insists on TLS before SASL: STARTTLS `<required/>`, or STARTTLS and no mechanisms. */
function requiresTls(features: Element): boolean {
  const starttls = features.getChild("starttls", NS_TLS);
  if (starttls === undefined) return false;
  return starttls.getChild("required") !== undefined || features.getChild("mechanisms", NS_SASL) === undefined;
}

type Event = { kind: "start"; el: Element } | { kind: "element"; el: Element } | { kind: "end" };

/** Reads one XMPP stream from a node, one event at a time, keeping unread bytes. */
class NodeStreamReader {
  private readonly reader: StreamReader;
  private unread: Buffer = Buffer.alloc(0);
  private event: Event | null = null;
  private wake: (() => void) | null = null;
  private failure: Error | null = null;

  constructor(
    private socket: net.Socket,
    maxHeaderBytes: number,
  ) {
    this.reader = new StreamReader(
      {
        onStreamStart: (el) => ((this.event = { kind: "start", el }), true),
        onElement: (el) => ((this.event = { kind: "element", el }), true),
        onStreamEnd: () => void (this.event = { kind: "end" }),
      },
      maxHeaderBytes,
    );
    this.attach(socket);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.unread = this.unread.length === 0 ? chunk : Buffer.concat([this.unread, chunk]);
    this.wake?.();
  };
  private readonly onClose = (): void => {
    this.failure ??= new UpstreamError("XMPP_LB_NODE_CLOSED", "the node closed the connection during stream setup", true);
    this.wake?.();
  };
  private readonly onError = (err: Error): void => {
    this.failure ??= new UpstreamError("XMPP_LB_NODE_UNREACHABLE", `node connection failed: ${err.message}`, true, { cause: err });
    this.wake?.();
  };

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on("data", this.onData).on("close", this.onClose).on("error", this.onError);
  }

  detach(): void {
    this.socket.off("data", this.onData).off("close", this.onClose).off("error", this.onError);
  }

  restart(): void {
    this.reader.restart();
  }

  async next(): Promise<Event> {
    for (;;) {
      if (this.unread.length > 0) {
        const data = this.unread;
        this.unread = Buffer.alloc(0);
        try {
          this.unread = this.reader.push(data) ?? Buffer.alloc(0);
        } catch (err) {
          const reason = err instanceof StreamError ? err.message : String(err);
          throw new UpstreamError("XMPP_LB_NODE_BAD_XML", `the node sent bad XML: ${reason}`, true, { cause: err });
        }
        const event = this.event;
        this.event = null;
        if (event !== null) return event;
        continue;
      }
      if (this.failure !== null) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }

  async expectElement(): Promise<Element> {
    const event = await this.next();
    if (event.kind !== "element") throw new UpstreamError("XMPP_LB_NODE_STREAM", "the node ended its stream during setup", false);
    if (event.el.is("error", NS_STREAM)) {
      const condition = event.el.getChildElements().find((c) => c.getNS() === NS_STREAMS)?.name ?? "undefined-condition";
      throw new UpstreamError("XMPP_LB_NODE_STREAM_ERROR", `the node answered with stream error <${condition}/>`, false);
    }
    return event.el;
  }

  async openStream(domain: string): Promise<Element> {
    this.socket.write(clientStreamOpenXml(domain));
    const start = await this.next();
    if (start.kind !== "start") throw new UpstreamError("XMPP_LB_NODE_STREAM", "the node did not open a stream", true);
    const features = await this.expectElement();
    if (!features.is("features", NS_STREAM)) {
      throw new UpstreamError("XMPP_LB_NODE_STREAM", `the node sent <${features.name}/> instead of its features`, true);
    }
    return features;
  }

  /** The bytes read but not consumed: what follows the last element read. */
  takeUnread(): Buffer {
    const rest = Buffer.concat([this.reader.takePending(), this.unread]);
    this.unread = Buffer.alloc(0);
    return rest;
  }
}

function connectTcp(address: HostPort): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.host, port: address.port, allowHalfOpen: true });
    const onError = (err: Error): void => {
      socket.destroy();
      reject(new UpstreamError("XMPP_LB_NODE_UNREACHABLE", `cannot connect to ${address.host}:${address.port}: ${err.message}`, true, { cause: err }));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

function startTls(socket: net.Socket, opts: NodeDialOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      servername: net.isIP(opts.domain) ? undefined : opts.domain,
      ca: opts.ca,
      rejectUnauthorized: opts.ca !== undefined,
      minVersion: "TLSv1.2",
    });
    const onError = (err: Error): void => {
      secure.destroy();
      reject(new UpstreamError("XMPP_LB_NODE_TLS", `TLS with the node failed: ${err.message}`, true, { cause: err }));
    };
    secure.once("error", onError);
    secure.once("secureConnect", () => {
      secure.off("error", onError);
      resolve(secure);
    });
  });
}

/**
 * Connects to a node's internal address and prepares the transport for a
 * client: optional STARTTLS, then (login phase) a stream for the client's
 * domain with the node's features read. Rejects with UpstreamError; the whole
 * setup is bounded by `timeoutMs`.
 */
export async function dialNode(address: HostPort, opts: NodeDialOptions): Promise<NodeConnection> {
  let socket: net.Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  // After the deadline, a step that still completes must not leave a socket behind.
  const alive = <T extends net.Socket>(s: T): T => {
    if (timedOut) {
      s.destroy();
      throw new UpstreamError("XMPP_LB_NODE_TIMEOUT", "node setup finished after its deadline", true);
    }
    return s;
  };
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => (timedOut = true, socket?.destroy(), reject(new UpstreamError("XMPP_LB_NODE_TIMEOUT", `no answer from ${address.host}:${address.port} within ${opts.timeoutMs} ms`, true))), opts.timeoutMs);
  });
  const setup = async (): Promise<NodeConnection> => {
    socket = alive(await connectTcp(address));
    const always = opts.tls === "always";
    if (!always && !opts.openStream) return { socket, leftover: Buffer.alloc(0), tlsRequiredByNode: false };
    const reader = new NodeStreamReader(socket, opts.maxHeaderBytes);
    let features = await reader.openStream(opts.domain);
    const required = !always && requiresTls(features);
    if (always || required) {
      if (features.getChild("starttls", NS_TLS) === undefined) {
        throw new UpstreamError("XMPP_LB_NODE_NO_TLS", "the node does not offer STARTTLS (--backend-tls)", true);
      }
      socket.write(`<starttls xmlns='${NS_TLS}'/>`);
      const answer = await reader.expectElement();
      if (!answer.is("proceed", NS_TLS)) throw new UpstreamError("XMPP_LB_NODE_TLS", "the node refused STARTTLS", true);
      reader.detach();
      socket = alive(await startTls(socket, opts));
      if (!opts.openStream) return { socket, leftover: Buffer.alloc(0), tlsRequiredByNode: false };
      reader.attach(socket);
      reader.restart();
      features = await reader.openStream(opts.domain);
    }
    reader.detach();
    return { socket, features, leftover: reader.takeUnread(), tlsRequiredByNode: required };
  };
  try {
    return await Promise.race([setup(), timeout]);
  } catch (err) {
    socket?.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
