import net from "node:net";
import tls from "node:tls";
import type { Element } from "@xmpp/xml";
import type { HostPort } from "../cluster/address.js";
import { StreamError, UpstreamError } from "../errors.js";
import { NS_SASL, NS_STREAM, NS_STREAMS, NS_TLS } from "../xmpp/namespaces.js";
import { STARTTLS_XML } from "../xmpp/nonzas.js";
import { StreamReader, type StreamEvent } from "../xmpp/stream-reader.js";
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
  /**
   * The opening's `from`, as a client names itself: a node may offer (and
   * accept) some logins only to a stream that names its user (Prosody shows
   * and takes FAST tokens only then).
   */
  from?: string;
  /** Aborts the dial (the client left): the node's socket is destroyed at once. */
  signal?: AbortSignal;
  /** A PROXY protocol header, sent before anything else; a function gets the connected socket (a probe names its own addresses). */
  proxyHeader?: Buffer | ((socket: net.Socket) => Buffer);
}

export interface NodeConnection {
  /** The TCP socket, or TLS over it when the node's stream uses STARTTLS; half-open allowed (a FIN is passed on, not answered). */
  socket: net.Socket;
  /** The node's `<stream:features/>` when a stream was opened. */
  features?: Element;
  /** Bytes the node sent after its features (normally none): they belong to the client. */
  leftover: Buffer;
  /** Whether TLS was used because the node required it (not asked for). */
  tlsRequiredByNode: boolean;
}

/** SHA-256 fingerprint of the certificate a node presented (TLS to it), for channel binding; read only where it is compared. */
export function nodeCertificate(socket: net.Socket): string | undefined {
  return socket instanceof tls.TLSSocket ? socket.getPeerX509Certificate()?.fingerprint256 : undefined;
}

/** A node that insists on TLS before SASL: STARTTLS `<required/>`, or STARTTLS and no mechanisms. */
function requiresTls(features: Element): boolean {
  const starttls = features.getChild("starttls", NS_TLS);
  if (starttls === undefined) return false;
  return starttls.getChild("required") !== undefined || features.getChild("mechanisms", NS_SASL) === undefined;
}

/** Reads one XMPP stream from a node, one event at a time; what follows the last event stays unread. */
class NodeStreamReader {
  private readonly reader: StreamReader;
  private socket: net.Socket | null = null;
  private wake: (() => void) | null = null;
  private failure: UpstreamError | null = null;

  constructor(socket: net.Socket, maxHeaderBytes: number) {
    // The node is trusted to be a server: its features have children, and no tag limit applies.
    this.reader = new StreamReader({ maxHeaderBytes, maxTagBytes: Infinity, childElements: true });
    this.attach(socket);
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.failure ??= badXml(err);
    }
    this.wake?.();
  };
  private readonly onClose = (): void => {
    this.failure ??= new UpstreamError("XMPP_LB_NODE_CLOSED", "the node closed the connection during stream setup");
    this.wake?.();
  };
  private readonly onError = (err: Error): void => {
    this.failure ??= new UpstreamError("XMPP_LB_NODE_UNREACHABLE", `node connection failed: ${err.message}`, { cause: err });
    this.wake?.();
  };

  attach(socket: net.Socket): void {
    this.socket = socket;
    // The socket is half-open capable: the node's FIN ('end') already means it will say no more.
    socket.on("data", this.onData).on("end", this.onClose).on("close", this.onClose).on("error", this.onError);
  }

  /** Stops reading from the socket; bytes that arrive later stay in the socket for its next owner. */
  detach(): void {
    this.socket?.pause();
    this.socket?.off("data", this.onData).off("end", this.onClose).off("close", this.onClose).off("error", this.onError);
    this.socket = null;
  }

  /** Writes to the node (the socket the reader is attached to). */
  write(data: string): void {
    this.socket?.write(data);
  }

  /** A new stream: after STARTTLS, on the TLS socket. */
  restart(socket: net.Socket): void {
    this.reader.restart();
    this.attach(socket);
  }

  async next(): Promise<StreamEvent> {
    for (;;) {
      let event: StreamEvent | null;
      try {
        event = this.reader.next();
      } catch (err) {
        throw badXml(err);
      }
      if (event !== null) return event;
      if (this.failure !== null) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }

  async expectElement(): Promise<Element> {
    const event = await this.next();
    if (event.kind !== "element") throw new UpstreamError("XMPP_LB_NODE_PROTOCOL", "the node ended its stream during setup");
    if (event.element.is("error", NS_STREAM)) {
      const condition = event.element.getChildElements().find((c) => c.getNS() === NS_STREAMS)?.name ?? "undefined-condition";
      throw new UpstreamError("XMPP_LB_NODE_REFUSED", `the node answered the balancer with the stream error <${condition}/>`);
    }
    return event.element;
  }

  async openStream(domain: string, from: string | undefined): Promise<Element> {
    this.write(clientStreamOpenXml(domain, from));
    const start = await this.next();
    if (start.kind !== "start") throw new UpstreamError("XMPP_LB_NODE_PROTOCOL", "the node did not open a stream");
    const features = await this.expectElement();
    if (!features.is("features", NS_STREAM)) {
      throw new UpstreamError("XMPP_LB_NODE_PROTOCOL", `the node sent <${features.name}/> instead of its features`);
    }
    return features;
  }

  /** The bytes read but not consumed: what follows the last element read. */
  takeRest(): Buffer {
    return this.reader.takeRest();
  }
}

function badXml(err: unknown): UpstreamError {
  const reason = err instanceof StreamError ? err.message : String(err);
  return new UpstreamError("XMPP_LB_NODE_BAD_XML", `the node sent bad XML: ${reason}`, { cause: err });
}

/** Resolves once connected; the socket exists at once, so a deadline or an abort can destroy it mid-connect. */
function connected(socket: net.Socket, address: HostPort): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      socket.off("connect", onConnect).off("close", onClose);
      socket.destroy();
      reject(new UpstreamError("XMPP_LB_NODE_UNREACHABLE", `cannot connect to ${address.host}:${address.port}: ${err.message}`, { cause: err }));
    };
    const onClose = (): void => onError(new Error("closed while connecting"));
    const onConnect = (): void => {
      socket.off("error", onError).off("close", onClose);
      resolve(socket);
    };
    socket.once("error", onError).once("close", onClose).once("connect", onConnect);
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
      reject(new UpstreamError("XMPP_LB_NODE_TLS", `TLS with the node failed: ${err.message}`, { cause: err }));
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
  // Created before the first await, so the deadline (or the client leaving) can always destroy it.
  let socket: net.Socket = net.connect({ host: address.host, port: address.port, allowHalfOpen: true });
  let onAbort: (() => void) | undefined;
  let giveUp!: (err: UpstreamError) => void;
  const stopped = new Promise<never>((_, reject) => {
    giveUp = (err) => {
      socket.destroy();
      reject(err);
    };
  });
  stopped.catch(() => {}); // settled by whichever comes first; the race below reports it
  const timer = setTimeout(() => giveUp(new UpstreamError("XMPP_LB_NODE_TIMEOUT", `no answer from ${address.host}:${address.port} within ${opts.timeoutMs} ms`)), opts.timeoutMs);
  if (opts.signal !== undefined) {
    onAbort = () => giveUp(new UpstreamError("XMPP_LB_NODE_ABANDONED", "the client left during the dial"));
    if (opts.signal.aborted) onAbort();
    else opts.signal.addEventListener("abort", onAbort, { once: true });
  }
  const setup = async (): Promise<NodeConnection> => {
    await connected(socket, address);
    if (opts.proxyHeader !== undefined) socket.write(typeof opts.proxyHeader === "function" ? opts.proxyHeader(socket) : opts.proxyHeader);
    const always = opts.tls === "always";
    if (!always && !opts.openStream) return { socket, leftover: Buffer.alloc(0), tlsRequiredByNode: false };
    const reader = new NodeStreamReader(socket, opts.maxHeaderBytes);
    let features = await reader.openStream(opts.domain, opts.from);
    const required = !always && requiresTls(features);
    if (always || required) {
      if (features.getChild("starttls", NS_TLS) === undefined) {
        throw new UpstreamError("XMPP_LB_NODE_NO_TLS", "the node does not offer STARTTLS (--backend-tls)");
      }
      reader.write(STARTTLS_XML);
      const answer = await reader.expectElement();
      if (!answer.is("proceed", NS_TLS)) throw new UpstreamError("XMPP_LB_NODE_TLS", "the node refused STARTTLS");
      reader.detach();
      socket = await startTls(socket, opts);
      if (!opts.openStream) return { socket, leftover: Buffer.alloc(0), tlsRequiredByNode: false };
      reader.restart(socket);
      features = await reader.openStream(opts.domain, opts.from);
    }
    reader.detach();
    return { socket, features, leftover: reader.takeRest(), tlsRequiredByNode: required };
  };
  try {
    return await Promise.race([setup(), stopped]);
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) opts.signal?.removeEventListener("abort", onAbort);
  }
}
