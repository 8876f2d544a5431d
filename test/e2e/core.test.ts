/**
 * Gateway core, end to end: real gateway process, real child-process services, real SDK v2 clients
 * over real HTTP in both eras (pinned 2026-07-28 and 2025-11-25).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, echoService, eventually, modernPost, rawPost, startGateway, type Era, type Gateway } from '../helpers/harness.js';
import { fileLine } from '../helpers/watch.js';

const text = (r: { content?: unknown }) => (r.content as Array<{ text?: string }>)[0]?.text ?? '';

describe('gateway core (both eras)', () => {
  let gw: Gateway;
  let marker: string;

  before(async () => {
    marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-marker-')), 'marker.log');
    gw = await startGateway({
      server: { page_size: 5 },
      services: {
        echo: echoService({ era: 'auto' }, marker),
        legacyecho: echoService({ era: 'legacy' }, marker, 'echo://legacyecho/info'),
        modernecho: echoService({ era: 'modern' }, marker, 'echo://modernecho/info'),
        broken: { transport: 'stdio', command: '/nonexistent/service-binary', restart: { initial_delay_ms: 50, max_delay_ms: 200 } },
      },
    });
  });
  after(async () => {
    await gw?.stop();
  });

  for (const era of ['modern', 'legacy'] as Era[]) {
    describe(`agent era ${era}`, () => {
      let client: Client;
      before(async () => {
        client = await connect(gw, era);
        client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { ok: true } }));
      });
      after(async () => {
        await client?.close();
      });

      test('lists namespaced tools from every service, paginated across services', async () => {
        const names: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          // One page per request (listTools() without a cursor would walk all pages itself).
          const r = (await client.request({ method: 'tools/list', params: cursor ? { cursor } : {} })) as {
            tools: Array<{ name: string }>;
            nextCursor?: string;
          };
          names.push(...r.tools.map((t) => t.name));
          cursor = r.nextCursor;
          pages++;
        } while (cursor);
        assert.ok(pages > 1, 'page_size 5 must split the catalog into pages');
        for (const svc of ['echo', 'legacyecho', 'modernecho']) {
          for (const tool of ['echo', 'progress', 'slow', 'confirm', 'env']) assert.ok(names.includes(`${svc}.${tool}`), `${svc}.${tool} listed`);
        }
        assert.equal(new Set(names).size, names.length, 'no duplicates across pages');
      });

      test('calls a tool of each service era', async () => {
        for (const svc of ['echo', 'legacyecho', 'modernecho']) {
          const r = await client.callTool({ name: `${svc}.echo`, arguments: { text: `hi ${era}` } });
          assert.equal(text(r), `hi ${era}`);
        }
      });

      test('relays progress notifications', async () => {
        for (const svc of ['legacyecho', 'modernecho']) {
          const seen: number[] = [];
          const r = await client.callTool({ name: `${svc}.progress`, arguments: { steps: 3 } }, { onprogress: (p) => seen.push(p.progress) });
          assert.equal(text(r), 'done 3');
          assert.deepEqual(seen, [1, 2, 3], `${svc} progress relayed`);
        }
      });

      test('an input request round trip reaches the agent and back, for both service eras', async () => {
        for (const svc of ['legacyecho', 'modernecho']) {
          const r = await client.callTool({ name: `${svc}.confirm`, arguments: { question: 'proceed?' } });
          assert.equal(text(r), 'confirmed', `${svc}: ${JSON.stringify(r)}`);
        }
      });

      test('cancellation reaches the service', async () => {
        for (const svc of ['legacyecho', 'modernecho']) {
          const tag = `${era}-${svc}-${Date.now()}`;
          const ac = new AbortController();
          const p = client.callTool({ name: `${svc}.slow`, arguments: { tag, ms: 20_000 } }, { signal: ac.signal });
          await fileLine(marker, `started ${tag}`);
          ac.abort();
          await assert.rejects(p);
          await fileLine(marker, `cancelled ${tag}`);
        }
      });

      test('an unknown tool is a clear JSON-RPC error', async () => {
        await assert.rejects(client.callTool({ name: 'nope.nothing', arguments: {} }), /Unknown tool: nope\.nothing/);
      });

      test('prompts are namespaced and resources keep their URIs', async () => {
        const prompts = await client.listPrompts();
        assert.ok(prompts.prompts.some((p) => p.name === 'echo.greet'));
        const got = await client.getPrompt({ name: 'echo.greet', arguments: { who: 'bob' } });
        assert.match(JSON.stringify(got.messages), /Hello bob/);
        const res = await client.listResources();
        assert.ok(res.resources.some((r) => r.uri === 'echo://static/info'));
        const read = await client.readResource({ uri: 'echo://static/info' });
        assert.match(JSON.stringify(read.contents), /resource echo:\/\/static\/info/);
      });
    });
  }

  test('a service gets only its configured environment and a per-call credential, never the agent token', async () => {
    const client = await connect(gw, 'modern');
    const r = await client.callTool({ name: 'echo.env', arguments: {} });
    const sc = r.structuredContent as { env: string[]; credential: boolean; meta_keys: string[] };
    assert.equal(sc.credential, true);
    for (const leaked of ['PATH', 'HOME', 'USER']) assert.ok(!sc.env.includes(leaked), `${leaked} must not reach the service`);
    // Only the gateway's own credential (and the gateway's progress token) reach the service.
    assert.deepEqual(
      sc.meta_keys.filter((k) => k !== 'progressToken'),
      ['dev.micro-mcp/credential'],
    );
    await client.close();
  });

  test('a crowd of agents of both eras shares one service process', async () => {
    const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => connect(gw, i % 2 ? 'legacy' : 'modern')));
    const pids = await Promise.all(
      clients.map(async (c) => ((await c.callTool({ name: 'modernecho.env', arguments: {} })).structuredContent as { pid: number }).pid),
    );
    assert.equal(new Set(pids).size, 1, `one process serves every agent: ${JSON.stringify(pids)}`);
    await Promise.all(clients.map((c) => c.close()));
  });

  test("a 2025 service's elicitation that cannot be attributed to one call is refused, never misrouted; then the tool runs alone", async () => {
    const a = await connect(gw, 'legacy');
    const b = await connect(gw, 'modern');
    let asked = 0;
    for (const c of [a, b]) c.setRequestHandler('elicitation/create', async () => (asked++, { action: 'accept', content: { name: 'bee' } }));
    const tag = `ambiguous-${Date.now()}`;
    const ac = new AbortController();
    const slow = a.callTool({ name: 'legacyecho.slow', arguments: { tag, ms: 20_000 } }, { signal: ac.signal }).catch(() => undefined);
    await fileLine(marker, `started ${tag}`);
    // Two calls are in flight on the shared connection (ask-name has never asked here, so it shares it):
    // the service's request names neither. The gateway refuses it (-32600, upstream/connection.ts
    // interaction()) to the service, whose SDK ends the call with a tool error carrying that message.
    const r = await b.callTool({ name: 'legacyecho.ask-name', arguments: {} });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.deepEqual(r.content, [
      {
        type: 'text',
        text: "Fulfilling input required by 'tools/call' failed: elicitation/create refused by the gateway: it cannot be attributed to exactly one call in progress",
      },
    ]);
    assert.equal(asked, 0, 'no agent was asked');
    // Now the gateway knows ask-name asks (upstream/overflow): with slow still in flight, the next call
    // of it gets a connection (a process) of its own, where its question is b's alone.
    assert.match(text(await b.callTool({ name: 'legacyecho.ask-name', arguments: {} })), /^answer bee \(instance [0-9a-f-]{36}\)$/);
    assert.equal(asked, 1);
    ac.abort();
    await slow;
    // The agent's abort ends its wait at once; the gateway's call ends when the cancellation lands.
    // Until then the main connection holds a call that may ask (slow was in flight with a question).
    await eventually(
      async () =>
        ((await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; in_flight: number }> }).services.find(
          (s) => s.name === 'legacyecho',
        )?.in_flight === 0,
    );
    await a.close();
    await b.close();
  });

  test('requestState handed to an agent is signed and bound to that principal', async () => {
    const call = async (token: string, extra: Record<string, unknown> = {}) =>
      (
        await modernPost(
          gw,
          token,
          'tools/call',
          { name: 'modernecho.confirm', arguments: { question: 'ok?' }, ...extra },
          { capabilities: { elicitation: { form: {} } } },
        )
      ).at(-1)!;
    const alice = await gw.token({ sub: 'alice' });
    const bob = await gw.token({ sub: 'bob' });
    const first = await call(alice);
    assert.equal(first.result?.resultType, 'input_required');
    const state = first.result.requestState as string;
    const key = Object.keys(first.result.inputRequests)[0]!;
    const answer = { inputResponses: { [key]: { action: 'accept', content: { ok: true } } } };
    const stolen = await call(bob, { ...answer, requestState: state });
    assert.equal(stolen.error?.code, -32602, JSON.stringify(stolen));
    // One character of the MAC replaced by a different one (a full 6-bit group, so the bytes change).
    const at = state.length - 5;
    const tamperedState = state.slice(0, at) + (state[at] === 'A' ? 'B' : 'A') + state.slice(at + 1);
    assert.notEqual(tamperedState, state);
    const tampered = await call(alice, { ...answer, requestState: tamperedState });
    assert.equal(tampered.error?.code, -32602, JSON.stringify(tampered));
    const own = await call(alice, { ...answer, requestState: state });
    assert.match(JSON.stringify(own.result?.content), /confirmed/);
  });

  test('a 2026-07-28 request for a method only 2025 sessions have is answered Method not found', async () => {
    // The per-request Server of a 2026-07-28 request registers that era's methods only (mcp-face/server.ts):
    // logging/setLevel and resources/subscribe/unsubscribe belong to 2025 sessions (a 2026 agent names its
    // log level per request and subscribes on subscriptions/listen).
    const token = await gw.token({ sub: 'era-methods' });
    for (const [method, params] of [
      ['logging/setLevel', { level: 'info' }],
      ['resources/subscribe', { uri: 'echo://r/1' }],
      ['resources/unsubscribe', { uri: 'echo://r/1' }],
    ] as const) {
      const answers = await modernPost(gw, token, method, params);
      assert.deepEqual(answers, [{ jsonrpc: '2.0', id: 1, error: { code: -32601, message: 'Method not found' } }], method);
    }
    // The same methods still work in a 2025 session.
    const client = await connect(gw, 'legacy', { token });
    assert.deepEqual(await client.setLoggingLevel('info'), {});
    await client.close();
  });

  test('a killed service is restarted and the next call works', async () => {
    const client = await connect(gw, 'legacy');
    const restarts = async () =>
      ((await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; restarts: number; state: string }> }).services.find(
        (s) => s.name === 'legacyecho',
      )!;
    const before = (await restarts()).restarts;
    await client.callTool({ name: 'legacyecho.crash', arguments: {} });
    await eventually(async () => (await restarts()).restarts > before, 10_000);
    // The tool stays listed while the service restarts; the next call waits for it.
    const r = await client.callTool({ name: 'legacyecho.echo', arguments: { text: 'back' } });
    assert.equal(text(r), 'back');
    assert.equal((await restarts()).state, 'ready');
    await client.close();
  });

  test('list changes reach agents of both eras, and the new list shows the change', async () => {
    const legacy = await connect(gw, 'legacy');
    const modern = await connect(gw, 'modern');
    const names = async (c: Client) => (await c.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
    const before = await names(modern);
    assert.ok(before.includes('legacyecho.echo') && !before.includes('legacyecho.extra'), JSON.stringify(before));
    const legacySaw = new Promise<void>((r) => legacy.setNotificationHandler('notifications/tools/list_changed', () => r()));
    const modernSaw = new Promise<void>((r) => modern.setNotificationHandler('notifications/tools/list_changed', () => r()));
    const sub = await modern.listen({ toolsListChanged: true });
    assert.equal(text(await legacy.callTool({ name: 'legacyecho.toggle', arguments: {} })), 'extra on');
    await Promise.all([legacySaw, modernSaw]);
    // Exactly one tool appeared, for agents of both eras.
    for (const c of [modern, legacy]) assert.deepEqual((await names(c)).sort(), [...before, 'legacyecho.extra'].sort());
    await sub.close();
    await legacy.close();
    await modern.close();
  });

  test('bad input gets a clear error and the gateway keeps serving', async () => {
    const token = await gw.token();
    const auth = { authorization: `Bearer ${token}` };
    // malformed JSON
    let r = await rawPost(gw, '{"jsonrpc":"2.0",', auth);
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { code: number } }).error.code, -32700);
    // not JSON-RPC
    r = await rawPost(gw, '42', auth);
    assert.equal(r.status, 400);
    // oversized body
    r = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { pad: 'x'.repeat(2 * 1024 * 1024) } }), auth);
    assert.equal(r.status, 413);
    // oversized and streamed without a Content-Length: capped while it streams
    const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (sent++ < 16_384)
          ctl.enqueue(chunk); // up to 1 GiB: only an early stop answers in time
        else ctl.close();
      },
    });
    // The gateway answers 413 and closes the connection mid-upload; a client still sending may see
    // only the reset. Either way nothing past the cap is read and the gateway keeps serving.
    const streamed = await fetch(gw.mcpUrl, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: stream,
      duplex: 'half',
    } as RequestInit).then(
      (res) => res.status,
      () => 'connection closed',
    );
    assert.ok(streamed === 413 || streamed === 'connection closed', String(streamed));
    assert.ok(sent < 16_384, `the gateway stopped reading early (${sent} of 16384 chunks pulled)`);
    // header that disagrees with the body (2026-07-28)
    const body = {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: {
        name: 'echo.echo',
        arguments: { text: 'x' },
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    };
    r = await rawPost(gw, JSON.stringify(body), { ...auth, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' });
    assert.equal(r.status, 400);
    const j = (await r.json()) as { id: unknown; error?: { code: number; message: string } };
    assert.equal(j.id, 7);
    assert.equal(j.error?.code, -32020, JSON.stringify(j));
    assert.equal(
      j.error?.message,
      'Bad Request: the request headers and body disagree: the body names method tools/call but the Mcp-Method header names tools/list',
    );
    // wrong content type
    r = await fetch(gw.mcpUrl, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: '{}' });
    assert.equal(r.status, 415);
    // a foreign Origin (DNS rebinding) and a foreign Host
    r = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }), { ...auth, origin: 'http://evil.example' });
    assert.equal(r.status, 403);
    // still serving
    const client = await connect(gw, 'modern');
    assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: 'alive' } })), 'alive');
    await client.close();
    const health = await fetch(`${gw.url}/healthz`);
    assert.equal(health.status, 200);
  });

  test('list cursors are bound to the principal they were handed to', async () => {
    const alice = await connect(gw, 'modern', { token: await gw.token({ sub: 'alice' }) });
    const bob = await connect(gw, 'modern', { token: await gw.token({ sub: 'bob' }) });
    const first = (await alice.request({ method: 'tools/list', params: {} })) as { nextCursor?: string };
    assert.ok(first.nextCursor);
    await alice.request({ method: 'tools/list', params: { cursor: first.nextCursor } });
    await assert.rejects(bob.request({ method: 'tools/list', params: { cursor: first.nextCursor } }), /Invalid cursor/);
    await assert.rejects(alice.request({ method: 'tools/list', params: { cursor: `${first.nextCursor}x` } }), /Invalid cursor/);
    await alice.close();
    await bob.close();
  });

  test('an unhealthy service shows in /readyz while the others keep serving', async () => {
    const r = await fetch(`${gw.url}/readyz`);
    assert.equal(r.status, 200);
    const ready = (await r.json()) as { services: Array<{ name: string; state: string; error?: string }> };
    const broken = ready.services.find((s) => s.name === 'broken')!;
    assert.notEqual(broken.state, 'ready');
    assert.ok(broken.error);
    assert.ok(ready.services.filter((s) => s.name !== 'broken').every((s) => s.state === 'ready'));
    const client = await connect(gw, 'modern');
    assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: 'still' } })), 'still');
    await client.close();
  });

  test('caller-dependent 2026-07-28 results are marked private and not cacheable', async () => {
    const token = await gw.token();
    for (const method of ['tools/list', 'prompts/list', 'resources/list']) {
      const [answer] = await modernPost(gw, token, method);
      assert.equal(answer!.result.cacheScope, 'private', method);
      assert.equal(answer!.result.ttlMs, 0, method);
    }
  });

  test('a foreign Host header is refused (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const u = new URL(gw.mcpUrl);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: u.hostname, port: u.port, path: '/mcp', method: 'POST', headers: { host: 'evil.example:80', 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    assert.equal(status, 403);
  });

  test('a 2025 session ends with DELETE; its id is then unknown', async () => {
    const token = await gw.token();
    const auth = { authorization: `Bearer ${token}` };
    const init = await rawPost(
      gw,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
      auth,
    );
    const sid = init.headers.get('mcp-session-id')!;
    assert.ok(sid);
    await init.text();
    const h = { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    const del = await fetch(gw.mcpUrl, { method: 'DELETE', headers: h });
    assert.equal(del.status, 200);
    const after = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), h);
    assert.equal(after.status, 404);
  });

  test('2025 session ids come from a random source and are bound to their principal', async () => {
    const alice = await connect(gw, 'legacy', { token: await gw.token({ sub: 'alice' }) });
    const sid = (alice as unknown as { transport?: { sessionId?: string } }).transport?.sessionId;
    // <replica>-<a random UUID>: the prefix routes the session home behind a load balancer.
    assert.match(sid ?? '', /^r[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const bobToken = await gw.token({ sub: 'bob' });
    const r = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }), {
      authorization: `Bearer ${bobToken}`,
      'mcp-session-id': sid!,
      'mcp-protocol-version': '2025-11-25',
    });
    assert.equal(r.status, 404);
    await alice.close();
  });
});
