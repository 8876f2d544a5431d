import assert from 'node:assert/strict';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { Hono } from 'hono';
import { clientIp, type GatewayEnv } from '../../context.js';
import { clientAddress } from './index.js';

function app(trustedProxies: string[]) {
  const a = new Hono<GatewayEnv>();
  a.use('*', clientAddress({ trustedProxies }));
  a.get('/', (c) => c.text(String(clientIp(c))));
  return a;
}

/** A request as @hono/node-server hands it over, from `peer`, with an optional X-Forwarded-For. */
async function from(a: Hono<GatewayEnv>, peer: string, xff?: string): Promise<string> {
  // A real IncomingMessage on an unconnected socket whose peer address is `peer`.
  const socket = new Socket();
  Object.defineProperty(socket, 'remoteAddress', { value: peer });
  const incoming = new IncomingMessage(socket);
  const r = await a.request('/', { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }, { incoming });
  return r.text();
}

describe('client-address middleware', () => {
  test('without trusted proxies the socket peer is the caller, whatever X-Forwarded-For says', async () => {
    const a = app([]);
    assert.equal(await from(a, '203.0.113.9', '198.51.100.1'), '203.0.113.9');
    assert.equal(await from(a, '::ffff:127.0.0.1'), '127.0.0.1', 'an IPv4 peer on a dual-stack socket is plain IPv4');
  });

  test('behind a trusted proxy the nearest untrusted X-Forwarded-For hop is the caller', async () => {
    const a = app(['127.0.0.1', '10.0.0.0/8']);
    assert.equal(await from(a, '127.0.0.1', '198.51.100.7'), '198.51.100.7');
    assert.equal(
      await from(a, '127.0.0.1', 'spoofed-by-client, 198.51.100.7, 10.1.2.3'),
      '198.51.100.7',
      'trusted hops are skipped from the right; nothing left of the caller is believed',
    );
    assert.equal(await from(a, '127.0.0.1', '203.0.113.1, 198.51.100.7'), '198.51.100.7', 'an address the client wrote itself does not win');
    assert.equal(await from(a, '127.0.0.1'), '127.0.0.1', 'no header: the proxy itself');
  });

  test("an untrusted peer's X-Forwarded-For is ignored", async () => {
    assert.equal(await from(app(['10.0.0.1']), '192.0.2.44', '127.0.0.1'), '192.0.2.44');
  });

  test('a bad trusted_proxies entry is refused when the middleware is built', () => {
    assert.throws(() => clientAddress({ trustedProxies: ['nginx.internal'] }), /trusted_proxies: "nginx.internal" is not an address or CIDR range/);
  });
});
