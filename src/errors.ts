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

/**
 * Why a node could not be used for a client, and whether that says the node
 * itself is unwell (a passive health signal) or only that it refuses this
 * balancer or this attempt.
 */
export const UPSTREAM_ERRORS = {
  /** Connection refused, reset or unroutable. */
  XMPP_LB_NODE_UNREACHABLE: { nodeFault: true },
  /** No complete stream setup within --dial-timeout. */
  XMPP_LB_NODE_TIMEOUT: { nodeFault: true },
  /** The node closed the connection during stream setup. */
  XMPP_LB_NODE_CLOSED: { nodeFault: true },
  /** The node sent XML the balancer cannot read. */
  XMPP_LB_NODE_BAD_XML: { nodeFault: true },
  /** The node did not open a stream or send its features as XMPP says. */
  XMPP_LB_NODE_PROTOCOL: { nodeFault: true },
  /** The node answered with a stream error (e.g. ejabberd's fail2ban: <policy-violation/>): it refuses the balancer, it is not dead. */
  XMPP_LB_NODE_REFUSED: { nodeFault: false },
  /** --backend-tls, but the node offers no STARTTLS. */
  XMPP_LB_NODE_NO_TLS: { nodeFault: true },
  /** STARTTLS or the TLS handshake with the node failed. */
  XMPP_LB_NODE_TLS: { nodeFault: true },
  /** The client left while its node was being dialed: the dial was abandoned. */
  XMPP_LB_NODE_ABANDONED: { nodeFault: false },
} as const;
export type UpstreamErrorCode = keyof typeof UPSTREAM_ERRORS;

/** A cluster node could not be used for this connection (dial, stream or TLS failed). */
export class UpstreamError extends XmppLbError {
  declare readonly code: UpstreamErrorCode;
  constructor(code: UpstreamErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }

  /** Whether the node itself looks broken (a passive health signal), not just unwilling. */
  get nodeFault(): boolean {
    return UPSTREAM_ERRORS[this.code].nodeFault;
  }
}

/** The cluster store (Redis) cannot be reached or did not answer in time: the caller falls back to what it knows. */
export class StoreError extends XmppLbError {
  constructor(message: string, options?: ErrorOptions) {
    super("XMPP_LB_STORE_UNAVAILABLE", message, options);
  }
}
