import { constants, randomBytes } from "node:crypto";
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
export const TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
export const TLS_VERSIONS = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/** One certificate chain and its key; several (say ECDSA and RSA) may be served side by side. */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

export interface ClientTlsConfig {
  certificates: CertificateFiles[];
  /** OpenSSL cipher string (`--tls-ciphers`); TLS 1.3 suites (TLS_*) may be named in it too. */
  ciphers?: string;
  minVersion: TlsVersion;
  /**
   * Session ticket keys (48 bytes): shared by every --workers process so a
   * client resumes its TLS session whichever worker it reaches; one set per
   * process otherwise. Kept across reloads, so a SIGHUP invalidates no ticket.
   */
  ticketKeys?: Buffer;
}

/**
 * The cipher string given to OpenSSL: the user's, or ours. A list naming no
 * TLS 1.3 suite keeps ours for 1.3, since OpenSSL would otherwise be left with
 * none and every TLS 1.3 handshake would fail.
 */
export function cipherString(ciphers: string | undefined): string {
  if (ciphers === undefined) return `${TLS13_SUITES}:${DEFAULT_TLS12_CIPHERS}`;
  return ciphers.split(":").some((c) => c.startsWith("TLS_")) ? ciphers : `${TLS13_SUITES}:${ciphers}`;
}

/**
 * The client-facing TLS context: TLS 1.2 and up with the suites above in the
 * server's order, no renegotiation (a client could otherwise make the balancer
 * do handshakes at will on one connection), one chain per key type (OpenSSL
 * picks the one the client's signature algorithms allow), reloadable (SIGHUP)
 * without touching open connections.
 */
export class TlsContextHolder {
  private context: tls.SecureContext;
  private readonly ticketKeys: Buffer;

  constructor(private readonly config: ClientTlsConfig) {
    this.ticketKeys = config.ticketKeys ?? randomBytes(48);
    this.context = this.load();
  }

  get current(): tls.SecureContext {
    return this.context;
  }

  /** Re-reads the certificates and keys; the old context stays in use if they are unreadable. */
  reload(): void {
    this.context = this.load();
  }

  private load(): tls.SecureContext {
    const pairs = this.config.certificates.map((files) => {
      try {
        return { cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
      } catch (err) {
        throw new ConfigError(`cannot read the TLS certificate or key: ${(err as Error).message}`);
      }
    });
    const [first, ...more] = pairs;
    try {
      const context = tls.createSecureContext({
        cert: first!.cert,
        key: first!.key,
        minVersion: this.config.minVersion,
        ciphers: cipherString(this.config.ciphers),
        honorCipherOrder: true,
        secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
        // Resumed handshakes skip the certificate signature: reconnecting clients cost less.
        ticketKeys: this.ticketKeys,
      });
      // createSecureContext() given arrays sets every chain, then every key,
      // and OpenSSL then checks each key against the last chain: the pairs
      // must go in one at a time, chain first.
      const native = (context as unknown as { context: { setCert(c: Buffer): void; setKey(k: Buffer): void } }).context;
      for (const pair of more) {
        native.setCert(pair.cert);
        native.setKey(pair.key);
      }
      return context;
    } catch (err) {
      throw new ConfigError(`the TLS certificate, key or settings are not usable: ${(err as Error).message}`);
    }
  }
}

/**
 * The certificate a TLS server socket served its client (with an ECDSA and an
 * RSA chain side by side, the one the handshake chose), as a SHA-256
 * fingerprint read only when asked: channel binding compares it, and only
 * where the nodes bind.
 */
export function servedCertificate(socket: tls.TLSSocket): { readonly certificate: string | undefined } {
  return {
    get certificate() {
      return socket.getX509Certificate()?.fingerprint256;
    },
  };
}
