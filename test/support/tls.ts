// A self-signed certificate for 127.0.0.1, made by openssl (installed by
// .ci/run): for a TLS proxy in front of moto, as AWS endpoints are HTTPS.
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TestCert {
  key: string;
  cert: string;
  /** The certificate's file: NODE_EXTRA_CA_CERTS for a client that should trust it. */
  caFile: string;
}

/** `names`: extra DNS names in the certificate (e.g. a name only a forward proxy resolves). */
export async function selfSignedCert(dir: string, names: readonly string[] = []): Promise<TestCert> {
  const san = ['IP:127.0.0.1', ...names.map((n) => `DNS:${n}`)].join(',');
  const keyFile = join(dir, 'tls.key');
  const caFile = join(dir, 'tls.crt');
  const made = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', `subjectAltName=${san}`, '-keyout', keyFile, '-out', caFile],
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`openssl (installed by .ci/run) failed: ${made.stderr}`);
  return { key: await readFile(keyFile, 'utf8'), cert: await readFile(caFile, 'utf8'), caFile };
}
