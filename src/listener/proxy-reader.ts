import type { Socket } from "node:net";
import { ProxyHeaderError, parseProxyHeader, type ProxyHeader } from "../net/proxy-header.js";

/**
 * Reads the PROXY protocol header a front (NLB, ELB, HAProxy) sends first on
 * a connection. Resolves with the header; what followed it is put back into
 * the socket for whoever reads next (the dialogue, or TLS). Rejects with a
 * ProxyHeaderError when the connection does not start with a valid header or
 * none completes within `timeoutMs`; the caller closes the connection.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const finish = (err: Error | null, header?: ProxyHeader): void => {
      clearTimeout(timer);
      socket.off("data", onData).off("end", onEnd).off("error", onEnd);
      socket.pause();
      if (err !== null) return reject(err);
      const rest = received.subarray(header!.length);
      if (rest.length > 0) socket.unshift(rest);
      resolve(header!);
    };
    const onData = (chunk: Buffer): void => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      try {
        const header = parseProxyHeader(received);
        if (header !== null) finish(null, header);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onEnd = (): void => finish(new ProxyHeaderError("the connection ended before its PROXY header"));
    const timer = setTimeout(() => finish(new ProxyHeaderError(`no PROXY header within ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", onData).once("end", onEnd).once("error", onEnd);
  });
}
