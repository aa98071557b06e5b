import { pino, type Logger } from "pino";

export type { Logger };

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ["json", "pretty"] as const;
/** `json`: one JSON object per line, for log shippers; `pretty`: one readable line per event, for a person at a terminal. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The format when none is chosen: readable on a terminal, JSON anywhere else (a pipe, a file, journald). */
export function defaultLogFormat(stdout: { isTTY?: boolean } = process.stdout): LogFormat {
  return stdout.isTTY === true ? "pretty" : "json";
}

/**
 * pino-pretty in a pino transport: its own worker thread formats the lines, so
 * the event loop serializes JSON exactly as in the `json` format.
 */
function prettyStdout(): pino.DestinationStream {
  return pino.transport({
    target: "pino-pretty",
    options: {
      destination: 1,
      colorize: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
      translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l",
      ignore: "name,hostname",
      singleLine: true,
    },
  }) as pino.DestinationStream;
}

/**
 * The root logger: on stdout, JSON lines or (`pretty`) readable ones. SASL
 * payloads and passwords are never handed to a logger; the redact paths
 * guard against a future slip.
 */
export function createLogger(level: LogLevel, output?: LogFormat | pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name: "xmpp-lb",
    level,
    base: { pid: process.pid },
    redact: { paths: ["password", "payload", "auth", "*.password", "*.payload"], censor: "[redacted]" },
  };
  if (output === "pretty") return pino(options, prettyStdout());
  return output === undefined || output === "json" ? pino(options) : pino(options, output);
}

/** A log method as the balancer calls it: fields and a message, or a message. */
type LineFn = (fieldsOrMessage: object | string, message?: string) => void;

/** What code logging lines about one connection needs of a logger (a pino logger is one). */
export interface LineLogger {
  error: LineFn;
  warn: LineFn;
  info: LineFn;
  debug: LineFn;
  trace: LineFn;
}

type LineLevel = keyof LineLogger;

/**
 * A connection's logger: the balancer's logger, with the connection's
 * bindings merged into each line it logs at an enabled level. No pino child
 * is made: a child serializes its bindings (through the redaction) when made,
 * about 20 us and 2 KB per login, and every idle session would keep it, for
 * lines most connections never log (at `warn`, none; at `info`, two).
 */
export class BoundLogger implements LineLogger {
  constructor(
    private readonly parent: Logger,
    /** Asked at each line logged, never otherwise. */
    private readonly source: { logBindings(): object },
  ) {}

  private line(level: LineLevel, fieldsOrMessage: object | string, message?: string): void {
    if (!this.parent.isLevelEnabled(level)) return;
    const bindings = this.source.logBindings();
    if (typeof fieldsOrMessage === "string") this.parent[level](bindings, fieldsOrMessage);
    else if (fieldsOrMessage instanceof Error) this.parent[level]({ ...bindings, err: fieldsOrMessage }, message);
    else this.parent[level]({ ...bindings, ...fieldsOrMessage }, message);
  }

  error(fieldsOrMessage: object | string, message?: string): void {
    this.line("error", fieldsOrMessage, message);
  }

  warn(fieldsOrMessage: object | string, message?: string): void {
    this.line("warn", fieldsOrMessage, message);
  }

  info(fieldsOrMessage: object | string, message?: string): void {
    this.line("info", fieldsOrMessage, message);
  }

  debug(fieldsOrMessage: object | string, message?: string): void {
    this.line("debug", fieldsOrMessage, message);
  }

  trace(fieldsOrMessage: object | string, message?: string): void {
    this.line("trace", fieldsOrMessage, message);
  }
}
