/**
 * Hostile clients against a real gateway on loopback (issue #12, points 1-3): slow and
 * unauthenticated clients cost little, one principal cannot crowd out another, and probing is on the
 * record without filling the disk. Each client address is its own 127.0.0.x, so the per-address
 * ceilings of one case never touch another. Floods here are small; `make stress` runs large ones.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Line, readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, type Gateway, modernEnvelope, rawPost, startGateway } from '../helpers/harness.js';

let gw: Gateway;
let port: number;
const auditDir = () => path.join(gw.dir, 'audit');
const events = (type: string, f: (r: Line['rec']) => boolean = () => true) =>
  readRecords(auditDir())
    .map((l) => l.rec)
    .filter((r) => r.kind === 'event' && r.type === type && f(r));
const from = (ip: string) => (r: Line['rec']) => r.requested_by === ip;

before(async () => {
  gw = await startGateway({
    server: {
      headers_timeout_ms: 1000,
      request_timeout_ms: 2000,
      max_connections_per_ip: 4,
      max_bodies_in_flight_per_ip: 2,
      auth_failures_per_minute_per_ip: 3,
      max_sessions_per_principal: 2,
      max_streams_per_principal: 1,
    },
    audit: { refusals: { burst: 3, window_s: 2 } },
    services: { echo: echoService() },
  });
  port = Number(new URL(gw.url).port);
});
after(async () => {
  await gw?.stop();
});

/** A raw HTTP/1.1 exchange from a chosen client address: what came back, and that the socket closed. */
function raw(localAddress: string, head: string, body = ''): { socket: Socket; answer: Promise<{ text: string; closed: true }> } {
  const socket = netConnect({ host: '127.0.0.1', port, localAddress });
  let text = '';
  socket.setEncoding('utf8').on('data', (d: string) => (text += d));
  socket.write(head + body);
  const answer = new Promise<{ text: string; closed: true }>((resolve) => socket.once('close', () => resolve({ text, closed: true })));
  socket.on('error', () => undefined);
  return { socket, answer };
}

function post(localAddress: string, headers: Record<string, string>, body: string, opts: { sendOnly?: number } = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        path: '/mcp',
        method: 'POST',
        agent: false,
        headers: { host: `127.0.0.1:${port}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      },
      (res) => {
        let b = '';
        res.setEncoding('utf8').on('data', (d: string) => (b += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
      },
    );
    req.on('error', reject);
    if (opts.sendOnly !== undefined) req.write(body.slice(0, opts.sendOnly));
    else req.end(body);
  });
}

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

describe('unauthenticated and slow clients cost little', () => {
  test('without a valid token the body is never read: 401 with connection: close after the headers alone', async () => {
    // Only the headers and a few bytes of a body that claims 500 kB: the answer must not wait for it.
    const r = await post('127.0.0.2', { 'content-length': '500000' }, 'x'.repeat(100), { sendOnly: 100 });
    assert.equal(r.status, 401);
    assert.equal(r.headers.connection, 'close');
    assert.equal(JSON.parse(r.body).code, 'ERR_AUTH_MISSING');
    assert.equal(events('auth_failure', from('127.0.0.2')).length, 1, 'the refusal is on the record before the answer');
  });

  test('headers that never finish: 408 and the connection closed after headers_timeout_ms', async () => {
    const c = raw('127.0.0.3', `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `);
    const a = await c.answer;
    assert.match(a.text, /^HTTP\/1\.1 408 Request Timeout/);
  });

  test('an authenticated body that never finishes: the connection is closed after request_timeout_ms', async () => {
    const token = await gw.token({ sub: 'slowpoke' });
    const c = raw(
      '127.0.0.4',
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
      '{"jsonrpc"',
    );
    const a = await c.answer;
    assert.match(a.text, /^HTTP\/1\.1 408 Request Timeout/);
  });

  test('connections per client address: past the ceiling a socket is closed at once and recorded; other addresses are served', async () => {
    const held: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = netConnect({ host: '127.0.0.1', port, localAddress: '127.0.0.5' });
      await new Promise<void>((r) => s.once('connect', () => r()));
      held.push(s);
    }
    const fifth = raw('127.0.0.5', `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    assert.deepEqual(await fifth.answer, { text: '', closed: true }, 'closed without an answer');
    const other = raw('127.0.0.6', `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
    assert.match((await other.answer).text, /^HTTP\/1\.1 200 OK/);
    const ev = await eventually(() => events('limit_refused', from('127.0.0.5'))[0]);
    assert.deepEqual(ev.details, { limit: 'max_connections_per_ip' });
    held[0]!.destroy();
    await new Promise<void>((r) => held[0]!.once('close', () => r()));
    // The place is given back when the server sees the close: retry until it has.
    await eventually(async () =>
      /^HTTP\/1\.1 200 OK/.test((await raw('127.0.0.5', `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`).answer).text),
    );
    for (const s of held) s.destroy();
  });

  test('request bodies in flight per client address: a third concurrent body is refused 429, recorded', async () => {
    const token = await gw.token({ sub: 'bodies' });
    const auth = { authorization: `Bearer ${token}` };
    const slow = [0, 1].map(() =>
      raw(
        '127.0.0.7',
        `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
        '{',
      ),
    );
    // Both are being read once the gateway has authenticated them; the third waits for that.
    const third = (await eventually(async () => {
      const r = await post('127.0.0.7', auth, initialize);
      return r.status === 429 ? r : undefined;
    }))!;
    const j = JSON.parse(third.body) as { error: { code: number; message: string; data: { code: string } } };
    assert.equal(j.error.code, -32029);
    assert.equal(j.error.message, 'too many request bodies in flight from this address');
    assert.equal(j.error.data.code, 'ERR_RATE_LIMITED');
    assert.deepEqual(events('limit_refused', from('127.0.0.7'))[0]?.details, { limit: 'max_bodies_in_flight_per_ip' });
    for (const s of slow) s.socket.destroy();
  });

  test('failed authentications per address: past the budget, 429 without verifying, even for a good token; other addresses unaffected', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await post('127.0.0.8', { authorization: 'Bearer a.b.c' }, initialize);
      assert.equal(r.status, 401);
    }
    const good = { authorization: `Bearer ${await gw.token({ sub: 'neighbour' })}` };
    const r = await post('127.0.0.8', good, initialize);
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '60');
    assert.equal(JSON.parse(r.body).error.data.code, 'ERR_RATE_LIMITED');
    assert.equal(events('auth_failure', from('127.0.0.8')).length, 3);
    assert.deepEqual(events('limit_refused', from('127.0.0.8'))[0]?.details, { limit: 'auth_failures_per_minute_per_ip' });
    assert.equal((await post('127.0.0.9', good, initialize)).status, 200);
  });
});

describe('fair shares per principal', () => {
  test('sessions: a principal at its ceiling gets 429, another principal still opens one; ending one frees a place', async () => {
    const alice = { authorization: `Bearer ${await gw.token({ sub: 'share-alice' })}` };
    const bob = { authorization: `Bearer ${await gw.token({ sub: 'share-bob' })}` };
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await rawPost(gw, initialize, alice);
      assert.equal(r.status, 200);
      ids.push(r.headers.get('mcp-session-id')!);
    }
    const third = await rawPost(gw, initialize, alice);
    assert.equal(third.status, 429);
    assert.deepEqual(await third.json(), {
      jsonrpc: '2.0',
      error: { code: -32029, message: 'Too many sessions for this principal; end one (DELETE) first' },
      id: null,
    });
    assert.equal((await rawPost(gw, initialize, bob)).status, 200, "alice's ceiling is not bob's");
    const del = await fetch(gw.mcpUrl, { method: 'DELETE', headers: { ...alice, 'mcp-session-id': ids[0]!, 'mcp-protocol-version': '2025-11-25' } });
    assert.equal(del.status, 200);
    assert.equal((await rawPost(gw, initialize, alice)).status, 200);
  });

  test('streams: one open server-to-client stream per principal here; a second is 429, another principal is served; closing frees it', async () => {
    const session = async (sub: string) => {
      const auth = { authorization: `Bearer ${await gw.token({ sub })}` };
      const init = await rawPost(gw, initialize, auth);
      const h = { ...auth, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-11-25' };
      await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), h);
      return h;
    };
    const stream = async (h: Record<string, string>) => {
      const ac = new AbortController();
      const r = await fetch(gw.mcpUrl, { headers: { ...h, accept: 'text/event-stream' }, signal: ac.signal });
      return { r, ac };
    };
    const [carol1, carol2, dave] = [await session('stream-carol'), await session('stream-carol'), await session('stream-dave')];
    const first = await stream(carol1);
    assert.equal(first.r.status, 200);
    const second = await stream(carol2);
    assert.equal(second.r.status, 429);
    assert.equal(((await second.r.json()) as { error: { message: string } }).error.message, 'Too many open streams for this principal; close one first');
    const daves = await stream(dave);
    assert.equal(daves.r.status, 200, "carol's ceiling is not dave's");
    first.ac.abort();
    // The place is given back when the gateway sees the stream end: try until it has.
    const again = (await eventually(async () => {
      const s = await stream(carol2);
      if (s.r.status === 200) return s;
      await s.r.body?.cancel();
      return undefined;
    }))!;
    again.ac.abort();
    daves.ac.abort();
  });
});

describe('probing is on the record', () => {
  test('an unknown tool, a forged cursor, forged requestState, a foreign session and a header/body mismatch each write probe_refused', async () => {
    const token = await gw.token({ sub: 'prober' });
    const client = await connect(gw, 'modern', { token });
    await assert.rejects(client.callTool({ name: 'echo.nothing', arguments: {} }), /Unknown tool: echo\.nothing/);
    await assert.rejects(client.request({ method: 'tools/list', params: { cursor: 'v1.forged.mac' } }), /Invalid cursor/);
    await client.close();
    const forged = await rawPost(
      gw,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 3,
        method: 'tools/call',
        params: { name: 'echo.echo', arguments: { text: 'x' }, requestState: 'v1.e30.AAAA', _meta: modernEnvelope() },
      }),
      { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo.echo' },
    );
    assert.equal(((await forged.json()) as { error: { code: number } }).error.code, -32602);
    const owner = { authorization: `Bearer ${await gw.token({ sub: 'session-owner' })}` };
    const sid = (await rawPost(gw, initialize, owner)).headers.get('mcp-session-id')!;
    const foreign = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/list' }), {
      authorization: `Bearer ${token}`,
      'mcp-session-id': sid,
      'mcp-protocol-version': '2025-11-25',
    });
    assert.equal(foreign.status, 404);
    const mismatch = await rawPost(
      gw,
      JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo.echo', arguments: { text: 'x' }, _meta: modernEnvelope() } }),
      {
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/list',
      },
    );
    assert.equal(mismatch.status, 400);
    const probes = events('probe_refused', (r) => (r.principal as { id?: string } | undefined)?.id === 'prober').map((r) => [
      r.method,
      (r.error as { code: string }).code,
      r.tool ?? null,
    ]);
    assert.deepEqual(probes, [
      ['tools/call', 'ERR_TOOL_NOT_FOUND', 'echo.nothing'],
      ['tools/list', 'ERR_CURSOR_INVALID', null],
      ['tools/call', 'ERR_INPUT_STATE_INVALID', null],
      ['tools/list', 'JSONRPC_-32001', null],
      ['tools/call', 'JSONRPC_-32020', null],
    ]);
  });

  test('a flood of probes is written as the first few events and one count per window', async () => {
    const token = await gw.token({ sub: 'flooder' });
    const client = await connect(gw, 'modern', { token });
    const N = 20;
    for (let i = 0; i < N; i++) await assert.rejects(client.callTool({ name: `echo.missing${i}`, arguments: {} }), /Unknown tool/);
    await client.close();
    const mine = (r: Line['rec']) => (r.principal as { id?: string } | undefined)?.id === 'flooder';
    // The counts of a window are written when it ends (window_s: 2): wait for every refusal to be accounted for.
    const accounted = () =>
      events('probe_refused', mine).length +
      events('refusals_suppressed', mine).reduce((n, r) => n + Number((r.details as { suppressed: number }).suppressed), 0);
    await eventually(() => accounted() === N, 15_000);
    const written = events('probe_refused', mine).length;
    assert.ok(written < N, `not every probe was written one by one (${written} of ${N})`);
    const summary = events('refusals_suppressed', mine)[0]!;
    assert.equal((summary.details as { refused_type: string }).refused_type, 'probe_refused');
    assert.equal((summary.details as { window_s: number }).window_s, 2);
  });
});
