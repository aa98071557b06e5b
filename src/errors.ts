/**
 * Coded errors. A `StreamError` carries the RFC 6120 stream error condition the
 * client is sent before its connection is closed; a `SaslError` carries the SASL
 * failure condition (RFC 6120 section 6.5) and leaves the stream open.
 */

export type StreamErrorCondition =
  | "bad-format"
  | "bad-namespace-prefix"
  | "connection-timeout"
  | "host-unknown"
  | "internal-server-error"
  | "invalid-namespace"
  | "invalid-xml"
  | "not-authorized"
  | "not-well-formed"
  | "policy-violation"
  | "remote-connection-failed"
  | "reset"
  | "restricted-xml"
  | "see-other-host"
  | "system-shutdown"
  | "unsupported-encoding"
  | "unsupported-stanza-type"
  | "unsupported-version";

export type SaslFailureCondition =
  | "aborted"
  | "encryption-required"
  | "invalid-mechanism"
  | "malformed-request"
  | "temporary-auth-failure";

export class XmppLbError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Ends the client's stream with `condition`; `message` is for logs and the `<text/>`. */
export class StreamError extends XmppLbError {
  readonly condition: StreamErrorCondition;
  constructor(condition: StreamErrorCondition, message: string, options?: ErrorOptions) {
    super(`XMPP_LB_STREAM_${condition.toUpperCase().replace(/-/g, "_")}`, message, options);
    this.condition = condition;
  }
}

/** Answers one SASL attempt with `<failure/>`; the client may try again. */
export class SaslError extends XmppLbError {
  readonly condition: SaslFailureCondition;
  constructor(condition: SaslFailureCondition, message: string) {
    super(`XMPP_LB_SASL_${condition.toUpperCase().replace(/-/g, "_")}`, message);
    this.condition = condition;
  }
}

/** A bad flag or configuration value: the CLI prints the message and exits 2. */
export class ConfigError extends XmppLbError {
  constructor(message: string) {
    super("XMPP_LB_CONFIG", message);
  }
}

/** A cluster node could not be used for this connection (dial, stream or TLS failed). */
export class UpstreamError extends XmppLbError {
  /** Whether the node itself looks broken (so it is marked down), not just this attempt. */
  readonly nodeFault: boolean;
  constructor(code: string, message: string, nodeFault: boolean, options?: ErrorOptions) {
    super(code, message, options);
    this.nodeFault = nodeFault;
  }
}
