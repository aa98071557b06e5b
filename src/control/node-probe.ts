import type { Socket } from "node:net";
import type { HostPort } from "../cluster/address.js";
import type { NodeView, ProxyVersion } from "../cluster/node.js";
import { proxyHeader, type ProxyAddresses } from "../net/proxy-header.js";
import { dialNode, nodeCertificate, type NodeDialOptions } from "../upstream/node-stream.js";
import { readNodeLoginFeatures, type NodeLoginFeatures } from "./offered-logins.js";
import { STREAM_CLOSE_XML } from "../xmpp/nonzas.js";

export type NodeProbeOptions = Omit<NodeDialOptions, "openStream">;

/**
 * The user a probe's stream names: a node may show some logins only to a
 * stream that names one (Prosody's FAST), and the balancer names the real
 * user on the streams it opens for logins.
 */
const PROBE_USER = "xmpp-lb-probe";

/**
 * One XMPP-level health probe: opens a stream to the node and reads its
 * features (STARTTLS first when asked or required), then closes the stream.
 * Rejects with the dial's UpstreamError; resolves with what the node offers
 * for logins.
 */
export async function probeNode(address: HostPort, options: NodeProbeOptions): Promise<NodeLoginFeatures | undefined> {
  const { socket, features } = await dialNode(address, { ...options, from: `${PROBE_USER}@${options.domain}`, openStream: true });
  socket.on("error", () => {}); // a reset while closing says nothing about the node's health
  socket.end(STREAM_CLOSE_XML);
  socket.destroySoon();
  return features === undefined ? undefined : readNodeLoginFeatures(features, nodeCertificate(socket));
}

/** A connection's own two ends, as a PROXY header's addresses. */
function ownAddresses(socket: Socket): ProxyAddresses {
  return {
    source: { address: socket.localAddress ?? "127.0.0.1", port: socket.localPort ?? 0 },
    destination: { address: socket.remoteAddress ?? "127.0.0.1", port: socket.remotePort ?? 0 },
  };
}

export interface NodeProbePlan {
  /** How the probe dials: as clients' connections are dialed, with the probe's own deadline. */
  dial: Omit<NodeProbeOptions, "domain" | "proxyHeader">;
  /** The domains a node serves when it names none. */
  domains: readonly string[];
  backendProxy?: ProxyVersion;
  /** Told what each domain's stream offers, so logins are offered per domain. */
  learn(nodeId: string, domain: string, features: NodeLoginFeatures): void;
}

/**
 * A node's health probe: one stream per domain the node serves; its health
 * is the first one's. A node that reads PROXY headers gets one on probes
 * too, naming the probe's own connection: it waits for a header otherwise,
 * and ejabberd 23.01 mishandles LOCAL (v2) and UNKNOWN (v1) ones.
 */
export async function probeNodeDomains(node: NodeView, plan: NodeProbePlan): Promise<void> {
  const domains = node.domains.length > 0 ? node.domains : plan.domains;
  const version = node.proxy ?? plan.backendProxy;
  const proxy = version === undefined ? undefined : (socket: Socket) => proxyHeader(version, ownAddresses(socket));
  const probes = domains.map(async (domain) => {
    const features = await probeNode(node.internal, { ...plan.dial, domain, proxyHeader: proxy });
    if (features !== undefined) plan.learn(node.id, domain, features);
  });
  const [first] = await Promise.allSettled(probes);
  if (first?.status === "rejected") throw first.reason;
}
