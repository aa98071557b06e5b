import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

/**
 * The root logger: JSON lines on stdout. SASL payloads and passwords are
 * never handed to a logger; the redact paths guard against a future slip.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name: "xmpp-lb",
    level,
    base: { pid: process.pid },
    redact: { paths: ["password", "payload", "auth", "*.password", "*.payload"], censor: "[redacted]" },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
