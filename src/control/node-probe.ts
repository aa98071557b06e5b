import type { Socket } from "node:net";
import type { Element } from "@xmpp/xml";
import type { HostPort } from "../cluster/address.js";
import type { NodeView, ProxyVersion } from "../cluster/node.js";
import { proxyHeader, type ProxyAddresses } from "../net/proxy-header.js";
import { dialNode, type NodeDialOptions } from "../upstream/node-stream.js";
import { STREAM_CLOSE_XML } from "../xmpp/nonzas.js";

export type NodeProbeOptions = Omit<NodeDialOptions, "openStream">;

/**
 * One XMPP-level health probe: opens a stream to the node and reads its
 * features (STARTTLS first when asked or required), then closes the stream.
 * Rejects with the dial's UpstreamError; resolves with the features.
 */
export async function probeNode(address: HostPort, options: NodeProbeOptions): Promise<Element | undefined> {
  const { socket, features } = await dialNode(address, { ...options, openStream: true });
  socket.on("error", () => {}); // a reset while closing says nothing about the node's health
  socket.end(STREAM_CLOSE_XML);
  socket.destroySoon();
  return features;
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
  /** Told each domain's features, so the mechanisms are learnt per domain. */
  learn(nodeId: string, domain: string, features: Element): void;
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
