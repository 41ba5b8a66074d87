// Certificates for the TLS tests, made by `openssl` in a directory of their own: a test CA and leaves it signed for
// localhost and 127.0.0.1, each with its own key and serial number.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Leaf {
  certFile: string;
  keyFile: string;
  /** As Node's X509Certificate and getPeerCertificate() spell it: upper-case hex. */
  serialNumber: string;
}

export class TestCa {
  readonly dir = mkdtempSync(join(tmpdir(), 'muxgate-tls-'));
  readonly certFile = join(this.dir, 'ca.pem');
  readonly #keyFile = join(this.dir, 'ca.key');

  constructor() {
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=muxgate test CA', '-keyout', this.#keyFile, '-out', this.certFile);
  }

  /** The CA's certificate, PEM, for a client's `ca`. */
  get pem(): string {
    return readFileSync(this.certFile, 'latin1');
  }

  /** A leaf for localhost and 127.0.0.1 with this serial (hex digits), signed by the CA; its file holds the CA after it (a chain). */
  leaf(name: string, serialHex: string): Leaf {
    const keyFile = join(this.dir, `${name}.key`);
    const csrFile = join(this.dir, `${name}.csr`);
    const signedFile = join(this.dir, `${name}.signed.pem`);
    const extFile = join(this.dir, `${name}.ext`);
    writeFileSync(extFile, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n');
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=localhost/O=${name}`,
      '-keyout', keyFile, '-out', csrFile);
    openssl('x509', '-req', '-in', csrFile, '-CA', this.certFile, '-CAkey', this.#keyFile, '-set_serial', `0x${serialHex}`,
      '-days', '2', '-extfile', extFile, '-out', signedFile);
    const certFile = join(this.dir, `${name}.pem`);
    writeFileSync(certFile, readFileSync(signedFile, 'latin1') + this.pem);
    return { certFile, keyFile, serialNumber: serialHex.toUpperCase() };
  }

  /** A file of this name in the CA's directory, holding the text. */
  file(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The files muxgate is told of (MUX_TLS_CERT, MUX_TLS_KEY), empty until a leaf is served; a reload copies another over them. */
export class ServedPair {
  readonly certFile: string;
  readonly keyFile: string;

  constructor(ca: TestCa, name = 'served') {
    this.certFile = ca.file(`${name}.pem`, '');
    this.keyFile = ca.file(`${name}.key`, '');
  }

  serve(leaf: Leaf): void {
    copyFileSync(leaf.certFile, this.certFile);
    copyFileSync(leaf.keyFile, this.keyFile);
  }
}

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
