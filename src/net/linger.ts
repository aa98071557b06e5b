import type { Socket } from "node:net";

/** How long a peer that has been sent our FIN may take to close in turn, by situation. */
export const LINGER_MS = {
  /** A rejected client reading its stream error. */
  rejected: 2000,
  /** A redirected client reading its see-other-host. */
  redirected: 5000,
  /** The other side of a relay, once one side has gone. */
  relay: 10_000,
  /** Clients sent <system-shutdown/> while the balancer stops. */
  shutdown: 1000,
} as const;

/**
 * Ends the socket (after writing `data`), then destroys it if the peer has not
 * closed within `lingerMs`: a peer that never reads must not keep it open.
 */
export function endThenDestroy(socket: Socket, lingerMs: number, data?: string | Buffer): void {
  if (socket.destroyed) return;
  if (!socket.writableEnded) {
    if (data === undefined || data.length === 0) socket.end();
    else socket.end(data);
  }
  const timer = setTimeout(() => socket.destroy(), lingerMs).unref();
  socket.once("close", () => clearTimeout(timer));
}
