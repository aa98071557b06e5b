import { constants } from "node:crypto";
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { ConfigError } from "../errors.js";

/**
 * The client-facing TLS context: TLS 1.2 and up, no renegotiation (a client
 * could otherwise make the balancer do handshakes at will on one connection),
 * reloadable (SIGHUP) without touching open connections.
 */
export class TlsContextHolder {
  private context: tls.SecureContext;

  constructor(private readonly files: { certFile: string; keyFile: string }) {
    this.context = this.load();
  }

  get current(): tls.SecureContext {
    return this.context;
  }

  /** Re-reads the certificate and key; the old context stays in use if they are unreadable. */
  reload(): void {
    this.context = this.load();
  }

  private load(): tls.SecureContext {
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(this.files.certFile);
      key = readFileSync(this.files.keyFile);
    } catch (err) {
      throw new ConfigError(`cannot read the TLS certificate or key: ${(err as Error).message}`);
    }
    try {
      return tls.createSecureContext({ cert, key, minVersion: "TLSv1.2", secureOptions: constants.SSL_OP_NO_RENEGOTIATION });
    } catch (err) {
      throw new ConfigError(`the TLS certificate or key is not usable: ${(err as Error).message}`);
    }
  }
}
