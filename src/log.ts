import { pino, type Logger } from "pino";

export type { Logger };

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

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
