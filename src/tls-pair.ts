// MUX_TLS_CERT and MUX_TLS_KEY → the certificate chain and key the shards serve, checked as a pair: read at start (a
// bad pair stops muxgate) and again on SIGHUP (a bad pair is logged and the one in use kept).
import type { KeyObject, X509Certificate } from 'node:crypto';
import { ConfigError } from './errors.ts';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const crypto = process.getBuiltinModule('node:crypto');
const { readFileSync } = process.getBuiltinModule('node:fs');
const tls = process.getBuiltinModule('node:tls');

/** Where the pair is read from (the configuration names the files, never their contents: it is logged). */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/** What a shard builds its secure context from; crosses threads by structured clone. */
export interface TlsPair {
  /** The certificate, then its chain, PEM. */
  cert: string;
  key: string;
  /**
   * Session ticket keys (48 bytes) shared by every shard, so that a client resuming its session is spared a full
   * handshake whichever shard its connection lands on; new ones with every reload.
   */
  ticketKeys: Uint8Array;
  /** What the logs say of the certificate in use. */
  summary: TlsSummary;
}

export interface TlsSummary {
  subject: string;
  issuer: string;
  serialNumber: string;
  fingerprint256: string;
  validFrom: string;
  validTo: string;
  /** Certificates in the file: the leaf and its chain. */
  chainLength: number;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----\r?\n[^-]+-----END CERTIFICATE-----/g;
const PEM_PRIVATE_KEY = /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;

function readPem(variable: string, path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (error) {
    throw new ConfigError(variable, path, `a readable file holding ${what} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  return text;
}

/** The leaf and the chain after it, each parsed; the first is the one the key must match. */
function parseChain(path: string, text: string): X509Certificate[] {
  const blocks = text.match(PEM_CERTIFICATE);
  const expected = 'a PEM certificate (-----BEGIN CERTIFICATE-----), followed by its chain';
  if (blocks === null) throw new ConfigError('MUX_TLS_CERT', path, `${expected}: the file holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new crypto.X509Certificate(block);
    } catch (error) {
      throw new ConfigError('MUX_TLS_CERT', path, `${expected}: certificate ${i + 1} of the file cannot be read (${(error as Error).message})`);
    }
  });
}

function parseKey(path: string, text: string): KeyObject {
  const expected = 'an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)';
  if (!PEM_PRIVATE_KEY.test(text)) throw new ConfigError('MUX_TLS_KEY', path, `${expected}: the file holds no PEM private key`);
  try {
    return crypto.createPrivateKey({ key: text, format: 'pem' });
  } catch (error) {
    throw new ConfigError('MUX_TLS_KEY', path, `${expected}: ${(error as Error).message}`);
  }
}

/** Reads and checks the pair: each file readable and PEM, the key the certificate's, and both accepted by OpenSSL. */
export function loadTlsPair(files: TlsFiles): TlsPair {
  const certText = readPem('MUX_TLS_CERT', files.certFile, 'a PEM certificate chain');
  const keyText = readPem('MUX_TLS_KEY', files.keyFile, 'a PEM private key');
  const chain = parseChain(files.certFile, certText);
  const key = parseKey(files.keyFile, keyText);
  const leaf = chain[0];
  if (!leaf.checkPrivateKey(key)) {
    throw new ConfigError('MUX_TLS_KEY', files.keyFile, `the private key of the certificate in MUX_TLS_CERT (${files.certFile}, serial ${leaf.serialNumber}): this key does not match it`);
  }
  const cert = chain.map((certificate) => certificate.toString()).join('');
  const pem = key.export({ format: 'pem', type: 'pkcs8' }).toString();
  try {
    // What the shards will do with them: OpenSSL's own checks (a key too weak for its security level, say).
    tls.createSecureContext({ cert, key: pem });
  } catch (error) {
    throw new ConfigError('MUX_TLS_CERT', files.certFile, `a certificate and key OpenSSL accepts (${(error as Error).message})`);
  }
  return {
    cert,
    key: pem,
    ticketKeys: crypto.randomBytes(48),
    summary: {
      subject: leaf.subject.replaceAll('\n', ', '),
      issuer: leaf.issuer.replaceAll('\n', ', '),
      serialNumber: leaf.serialNumber,
      fingerprint256: leaf.fingerprint256,
      validFrom: leaf.validFrom,
      validTo: leaf.validTo,
      chainLength: chain.length,
    },
  };
}

/** Why a certificate is not valid now (expired, or not yet), or null: logged as a warning, never fatal. */
export function validityProblem(summary: TlsSummary, now = Date.now()): string | null {
  if (now > Date.parse(summary.validTo)) return `the certificate expired on ${summary.validTo}`;
  if (now < Date.parse(summary.validFrom)) return `the certificate is not valid before ${summary.validFrom}`;
  return null;
}
