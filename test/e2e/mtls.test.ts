/**
 * Mutual TLS from the gateway to a remote Streamable HTTP service: the gateway presents its client
 * certificate and checks the service's against the configured CA; the service sees the gateway's
 * per-call credential as a Bearer token, never the agent's.
 */
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createMcpHandler, Server as McpServer } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { decodeJwt } from 'jose';
import { connect, startGateway, type Gateway } from '../helpers/harness.js';
import { makePki } from '../helpers/pki.js';

describe('mutual TLS to a remote service', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-mtls-'));
  const seen: Array<{ cn: string | undefined; authorization: string | undefined }> = [];
  let https: Server;
  let url: string;
  let gw: Gateway;

  before(async () => {
    const pki = makePki(dir, 'gw');
    const handler = createMcpHandler(() => {
      const s = new McpServer({ name: 'remote-echo', version: '1' }, { capabilities: { tools: {} } });
      s.setRequestHandler('tools/list', async () => ({
        tools: [
          {
            name: 'echo',
            inputSchema: { type: 'object', properties: { text: { type: 'string' } } },
            annotations: { readOnlyHint: true, openWorldHint: false },
          },
        ],
      }));
      s.setRequestHandler('tools/call', async (req) => ({ content: [{ type: 'text', text: String((req.params.arguments as { text?: string }).text) }] }));
      return s;
    });
    const node = toNodeHandler(handler);
    https = createServer(
      { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        seen.push({
          cn: (req.socket as TLSSocket).getPeerCertificate().subject?.CN as string | undefined,
          authorization: req.headers.authorization as string | undefined,
        });
        void node(req, res);
      },
    );
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
    url = `https://127.0.0.1:${(https.address() as AddressInfo).port}/mcp`;
    gw = await startGateway({
      services: { remote: { transport: 'http', url, tls: { ca_file: pki.ca, cert_file: pki.clientCert, key_file: pki.clientKey } } },
    });
  });
  after(async () => {
    await gw?.stop();
    https?.closeAllConnections();
    await new Promise<void>((r) => https.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('calls reach the service over mTLS with a per-call credential for that service', async () => {
    const agentToken = await gw.token({ scopes: ['remote:call'] });
    const client = await connect(gw, 'modern', { token: agentToken });
    const r = await client.callTool({ name: 'remote.echo', arguments: { text: 'over mtls' } });
    assert.equal((r.content as Array<{ text: string }>)[0]!.text, 'over mtls');
    await client.close();
    assert.ok(seen.length > 0 && seen.every((s) => s.cn === 'micro-mcp-client'), 'every request presented the gateway client certificate');
    const call = seen.filter((s) => s.authorization).at(-1)!;
    const claims = decodeJwt(call.authorization!.replace(/^Bearer /, ''));
    assert.equal(claims.aud, 'micro-mcp:service:remote');
    assert.equal(claims.scope, 'tool:echo');
    assert.ok(
      seen.every((s) => !s.authorization?.includes(agentToken)),
      'the agent token never reaches the service',
    );
  });

  test('without a client certificate the service cannot be reached', async () => {
    await assert.rejects(fetch(url, { method: 'POST', body: '{}' }));
  });
});
