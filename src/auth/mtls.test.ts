import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewayError } from '../errors.js';
import { createMtlsFetch } from './mtls.js';
import { makePki } from '../../test/helpers/pki.js';

describe('mTLS fetch to a remote service', () => {
  let dir: string;
  let server: Server;
  let base: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-mtls-'));
    makePki(dir, 'good');
    makePki(dir, 'rogue');
    server = createServer(
      {
        cert: await readFile(join(dir, 'good-server.pem')),
        key: await readFile(join(dir, 'good-server.key')),
        ca: await readFile(join(dir, 'good-ca.pem')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ cn: peer.subject?.CN, method: req.method, body, auth: req.headers.authorization ?? null }));
        });
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  const cfg = (client: string, ca: string) => ({
    cert_file: join(dir, `${client}-client.pem`),
    key_file: join(dir, `${client}-client.key`),
    ca_file: join(dir, `${ca}-ca.pem`),
  });

  it('presents the client certificate and streams a POST body', async () => {
    const f = await createMtlsFetch(cfg('good', 'good'));
    const res = await f(`${base}/mcp`, { method: 'POST', body: '{"jsonrpc":"2.0"}', headers: { authorization: 'Bearer svc-token' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { cn: 'micro-mcp-client', method: 'POST', body: '{"jsonrpc":"2.0"}', auth: 'Bearer svc-token' });
  });

  it('is refused by the service with a client certificate from another CA', async () => {
    const f = await createMtlsFetch(cfg('rogue', 'good'));
    await assert.rejects(f(`${base}/mcp`));
  });

  it('refuses a service whose certificate does not chain to the configured CA', async () => {
    const f = await createMtlsFetch(cfg('good', 'rogue'));
    await assert.rejects(f(`${base}/mcp`), /certificate/i);
  });

  it('refuses plain http and reports unreadable files as config errors', async () => {
    const f = await createMtlsFetch(cfg('good', 'good'));
    await assert.rejects(f('http://127.0.0.1:1/mcp'), TypeError);
    await assert.rejects(
      createMtlsFetch({ ...cfg('good', 'good'), ca_file: join(dir, 'missing.pem') }),
      (e: unknown) => e instanceof GatewayError && e.code === 'ERR_CONFIG_INVALID',
    );
  });
});
