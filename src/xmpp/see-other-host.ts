import { streamErrorXml } from "./stream-error.js";

/** HOST:PORT as a see-other-host payload: IPv6 literals in brackets (RFC 6120 4.9.3.19). */
export function formatHostPort(host: string, port: number): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${h}:${port}`;
}

/** The whole redirect: stream error with the node's external address, then end of stream. */
export function seeOtherHostXml(host: string, port: number): string {
  return streamErrorXml("see-other-host", undefined, formatHostPort(host, port));
}
