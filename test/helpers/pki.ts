/** A throwaway PKI made with the real openssl CLI: a CA, a server cert for 127.0.0.1, a client cert. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export function makePki(dir: string, name: string): Pki {
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '1', '-subj', `/CN=${name} test CA`);
  for (const [who, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(path.join(dir, `${name}-${who}.ext`), `${ext}\n`);
    ossl('req', ...ec, '-keyout', `${name}-${who}.key`, '-out', `${name}-${who}.csr`, '-subj', `/CN=micro-mcp-${who}`);
    ossl(
      'x509',
      '-req',
      '-in',
      `${name}-${who}.csr`,
      '-CA',
      `${name}-ca.pem`,
      '-CAkey',
      `${name}-ca.key`,
      '-CAcreateserial',
      '-out',
      `${name}-${who}.pem`,
      '-days',
      '1',
      '-extfile',
      `${name}-${who}.ext`,
    );
  }
  const p = (f: string) => path.join(dir, f);
  return {
    ca: p(`${name}-ca.pem`),
    serverCert: p(`${name}-server.pem`),
    serverKey: p(`${name}-server.key`),
    clientCert: p(`${name}-client.pem`),
    clientKey: p(`${name}-client.key`),
  };
}
