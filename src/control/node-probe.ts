import type { Element } from "@xmpp/xml";
import type { HostPort } from "../cluster/address.js";
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
