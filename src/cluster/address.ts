export interface HostPort {
  host: string;
  port: number;
}

/** Parses `host:port`, `[v6]:port` or `v6` with a trailing `:port`; null when malformed. */
export function parseHostPort(text: string, defaultPort?: number): HostPort | null {
  const t = text.trim();
  let host: string;
  let portText: string | undefined;
  if (t.startsWith("[")) {
    const close = t.indexOf("]");
    if (close === -1) return null;
    host = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return null;
    portText = rest === "" ? undefined : rest.slice(1);
  } else {
    const colon = t.lastIndexOf(":");
    if (colon !== -1 && t.indexOf(":") === colon) {
      host = t.slice(0, colon);
      portText = t.slice(colon + 1);
    } else if (colon === -1) {
      host = t;
    } else {
      return null; // a bare IPv6 literal needs brackets to carry a port
    }
  }
  if (host === "") return null;
  const port = portText === undefined ? defaultPort : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { host, port };
}
