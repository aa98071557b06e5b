import { constants } from "node:crypto";
import { readFileSync } from "node:fs";
import tls from "node:tls";
import { ConfigError } from "../errors.js";

/**
 * TLS 1.2 suites for clients: forward secrecy (ECDHE) and AEAD only, strongest
 * first (TLS 1.3's own suites are all AEAD with forward secrecy). No CBC (Lucky
 * Thirteen), no static RSA key exchange, no DHE (slow, and weak groups).
 */
export const DEFAULT_TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
].join(":");
const TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

/**
 * The client-facing TLS context: TLS 1.2 and up with the suites above in the
 * server's order, no renegotiation (a client could otherwise make the balancer
 * do handshakes at will on one connection), reloadable (SIGHUP) without
 * touching open connections.
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
      return tls.createSecureContext({
        cert,
        key,
        minVersion: "TLSv1.2",
        ciphers: `${TLS13_SUITES}:${DEFAULT_TLS12_CIPHERS}`,
        honorCipherOrder: true,
        secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
      });
    } catch (err) {
      throw new ConfigError(`the TLS certificate or key is not usable: ${(err as Error).message}`);
    }
  }
}
