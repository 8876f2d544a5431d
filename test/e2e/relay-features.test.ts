/**
 * Issue #11 point 1 (the relay half): features beyond tools pass through with their semantics, for
 * agents of both eras (SDK 2.x of each era, SDK 1.x) and services of both eras (the echo fixture as
 * a 2025 and as a 2026-07-28 service): logging (each agent's own level; a service's messages reach
 * only the agent whose call caused them), prompts/get input_required retries, completion (routed to
 * the owner of the prompt or template, decided by policy), resource subscriptions (decided by policy,
 * updates only to subscribed agents). Bad input is refused with a clear error and audited.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { EmptyResultSchema, LoggingMessageNotificationSchema, McpError, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { type Line, readRecords } from '../helpers/audit.js';
import { connect, connectV1, echoService, eventually, type Gateway, startGateway } from '../helpers/harness.js';

type Msg = { level: string; logger?: string; data: unknown };

const SERVICES = ['legacyecho', 'modernecho'] as const;
const expected = (tag: string, levels: string[]): Msg[] => levels.map((level) => ({ level, logger: 'echo', data: `${tag} ${level}` }));
const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';

describe('relay: logging, prompts', () => {
  let gw: Gateway;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    gw = await startGateway({
      services: { legacyecho: echoService({ era: 'legacy' }), modernecho: echoService({ era: 'modern' }, undefined, 'echo://modernecho/info') },
    });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });
  const events = (type: string, f: (r: Line['rec']) => boolean) =>
    readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec)
      .filter((r) => r.kind === 'event' && r.type === type && f(r));

  /** A 2.x client that collects the log messages it receives. */
  async function collecting2(era: 'modern' | 'legacy', sub: string): Promise<{ client: Client; got: Msg[] }> {
    const client = await connect(gw, era, { token: await gw.token({ sub }) });
    clients.push(client);
    const got: Msg[] = [];
    client.setNotificationHandler('notifications/message', (n) => void got.push(n.params as Msg));
    return { client, got };
  }

  for (const svc of SERVICES) {
    test(`2025 agents, ${svc}: each agent's level; a call's messages reach only its own agent`, async () => {
      const a = await collecting2('legacy', `log-a-${svc}`);
      await a.client.setLoggingLevel('warning');
      const b = await connectV1(gw, { token: await gw.token({ sub: `log-b-${svc}` }) });
      clients.push(b);
      const bGot: Msg[] = [];
      b.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void bGot.push(n.params as Msg));

      assert.equal(text(await a.client.callTool({ name: `${svc}.log`, arguments: { tag: 'a' } })), 'logged a');
      await eventually(() => a.got.length >= 2);
      assert.deepEqual(a.got, expected('a', ['warning', 'error']));

      // B set no level: it gets every level of its own call, and nothing of A's (B's last message
      // arriving is the event that would have carried A's before it).
      assert.equal(text(await b.callTool({ name: `${svc}.log`, arguments: { tag: 'b' } })), 'logged b');
      await eventually(() => bGot.length >= 4);
      assert.deepEqual(bGot, expected('b', ['debug', 'info', 'warning', 'error']));
      assert.deepEqual(a.got, expected('a', ['warning', 'error']), 'A received nothing of B');

      // B raises its level; A's stays.
      await b.setLoggingLevel('error');
      await b.callTool({ name: `${svc}.log`, arguments: { tag: 'b2' } });
      await eventually(() => bGot.length >= 5);
      assert.deepEqual(bGot.slice(4), expected('b2', ['error']));
    });

    test(`2026 agents, ${svc}: the request's logLevel decides; no level, no messages`, async () => {
      const m = await collecting2('modern', `log-m-${svc}`);
      assert.equal(text(await m.client.callTool({ name: `${svc}.log`, arguments: { tag: 'quiet' } })), 'logged quiet');
      await m.client.callTool({ name: `${svc}.log`, arguments: { tag: 'm' }, _meta: { 'io.modelcontextprotocol/logLevel': 'info' } });
      await eventually(() => m.got.length >= 3);
      assert.deepEqual(m.got, expected('m', ['info', 'warning', 'error']), 'the call without a level got none');
    });
  }

  test('a log level that does not exist is refused with -32602 and audited; the agent keeps its level', async () => {
    const sub = 'log-bad';
    const v1 = await connectV1(gw, { token: await gw.token({ sub }) });
    clients.push(v1);
    const got: Msg[] = [];
    v1.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void got.push(n.params as Msg));
    await v1.setLoggingLevel('error');
    const e = await v1.request({ method: 'logging/setLevel', params: { level: 'verbose' } }, EmptyResultSchema).then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(e instanceof McpError, String(e));
    assert.equal(e.code, -32602);
    assert.equal(
      e.message,
      'MCP error -32602: Invalid params: unknown log level; the levels are debug, info, notice, warning, error, critical, alert, emergency',
    );
    const rec = await eventually(() => events('probe_refused', (r) => (r.principal as { id?: string } | undefined)?.id === sub)[0]);
    assert.equal(rec.method, 'logging/setLevel');
    assert.equal((rec.error as { code: string }).code, 'ERR_LOG_LEVEL_INVALID');
    // Still at "error": the refused request changed nothing.
    await v1.callTool({ name: 'legacyecho.log', arguments: { tag: 'kept' } });
    await eventually(() => got.length >= 1);
    assert.deepEqual(got, expected('kept', ['error']));
  });

  for (const era of ['modern', 'legacy'] as const) {
    test(`prompts/get: a 2026 service's input_required round comes back to it with the answer and its state (${era} agent)`, async () => {
      const client = await connect(gw, era, { token: await gw.token({ sub: `prompt-${era}` }) });
      clients.push(client);
      client.setRequestHandler('elicitation/create', async (req) => {
        assert.equal((req.params as { message: string }).message, 'Whom to greet?');
        return { action: 'accept', content: { name: 'Ada' } };
      });
      const r = await client.getPrompt({ name: 'modernecho.ask' });
      assert.deepEqual(r.messages, [{ role: 'user', content: { type: 'text', text: 'Hello Ada (state ask-round-1)' } }]);
    });
  }

  for (const era of ['modern', 'legacy'] as const) {
    for (const svc of SERVICES) {
      test(`completion/complete (${era} agent, ${svc}): routed to the prompt's service, local name, exact values`, async () => {
        const client = await connect(gw, era, { token: await gw.token({ sub: `complete-${era}` }) });
        clients.push(client);
        const r = await client.complete({ ref: { type: 'ref/prompt', name: `${svc}.greet` }, argument: { name: 'who', value: 'A' } });
        assert.deepEqual(r.completion, { values: ['Ada', 'Alan'], total: 2, hasMore: false });
      });
    }
  }

  test("completion/complete of a resource template goes to the template's service; both are decided by policy", async () => {
    const v1 = await connectV1(gw, { token: await gw.token({ sub: 'complete-v1' }) });
    clients.push(v1);
    const r = await v1.complete({ ref: { type: 'ref/resource', uri: 'echo://items/{id}' }, argument: { name: 'id', value: '1' } });
    assert.deepEqual(r.completion, { values: ['1', '10'], total: 2, hasMore: false });
    // Without the service's scope the same completion is denied by both engines.
    const other = await connectV1(gw, { token: await gw.token({ sub: 'complete-noscope', scopes: ['fs:read'] }) });
    clients.push(other);
    const e = await other.complete({ ref: { type: 'ref/prompt', name: 'legacyecho.greet' }, argument: { name: 'who', value: 'A' } }).then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(e instanceof McpError, String(e));
    assert.equal(e.code, -32003);
    assert.equal(e.message, 'MCP error -32003: denied by policy: service_content_scope_missing');
  });

  test("resources/subscribe (2025 agents): decided by policy; updates reach only subscribed agents; the last unsubscribe ends the service's", async () => {
    const uri = 'echo://static/info';
    const a = await collecting2('legacy', 'sub-a');
    const aGot: string[] = [];
    a.client.setNotificationHandler('notifications/resources/updated', (n) => void aGot.push(n.params.uri));
    const b = await connectV1(gw, { token: await gw.token({ sub: 'sub-b' }) });
    clients.push(b);
    const bGot: string[] = [];
    b.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void bGot.push(n.params.uri));

    await a.client.subscribeResource({ uri });
    assert.equal(text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri } })), `updated ${uri}`);
    await eventually(() => aGot.length >= 1);
    // B subscribes now; the next update reaches both, B's first is the event that would have shown an earlier one.
    await b.subscribeResource({ uri });
    await b.callTool({ name: 'legacyecho.touch', arguments: { uri } });
    await eventually(() => aGot.length >= 2 && bGot.length >= 1);
    assert.deepEqual(aGot, [uri, uri]);
    assert.deepEqual(bGot, [uri]);

    // Unsubscribing: the service keeps its subscription while B holds one, and drops it after the last.
    await a.client.unsubscribeResource({ uri });
    assert.equal(text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri } })), `updated ${uri}`);
    await eventually(() => bGot.length >= 2);
    await b.unsubscribeResource({ uri });
    await eventually(async () => text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri } })) === `not subscribed ${uri}`);
    assert.deepEqual(aGot, [uri, uri], 'A got nothing after it unsubscribed');
  });

  test('resources/subscribe to a resource the agent may not read: the policy denial, audited; nothing subscribed', async () => {
    const sub = 'sub-denied';
    const c = await connectV1(gw, { token: await gw.token({ sub, scopes: ['fs:read'] }) });
    clients.push(c);
    const e = await c.subscribeResource({ uri: 'echo://static/info' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(e instanceof McpError, String(e));
    assert.equal(e.code, -32003);
    assert.equal(e.message, 'MCP error -32003: denied by policy: service_content_scope_missing');
    const rec = readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec)
      .find((r) => r.kind === 'decision' && (r.principal as { id?: string } | undefined)?.id === sub);
    assert.equal(rec?.method, 'resources/subscribe');
    assert.equal((rec?.result as { allow?: boolean } | undefined)?.allow, false);
  });

  test("a 2026 agent's subscriptions/listen: the acknowledgement lists the list changes and only the resources it was granted", async () => {
    // May read modernecho's resource, not legacyecho's (echo://static/info); subscriptions-modern.test.ts covers delivery.
    const m = await connect(gw, 'modern', { token: await gw.token({ sub: 'listen-honest', scopes: ['modernecho:call'] }) });
    clients.push(m);
    const sub = await m.listen({ toolsListChanged: true, resourceSubscriptions: ['echo://static/info', 'echo://modernecho/info'] });
    assert.deepEqual(sub.honoredFilter, { toolsListChanged: true, resourceSubscriptions: ['echo://modernecho/info'] });
    await sub.close();
  });

  test("a service's log flood during a call ends that call like a progress flood (ERR_SERVICE_FLOOD)", async () => {
    const { client } = await collecting2('legacy', 'log-flood');
    const e = await client.callTool({ name: 'legacyecho.logflood', arguments: { count: 2000 } }).then(
      () => undefined,
      (err: unknown) => err as { code?: number; message?: string; data?: { code?: string } },
    );
    assert.equal(e?.code, -32004);
    assert.equal(e?.message, 'service "legacyecho" sent more than 100 notifications a second; call ended');
    assert.equal(e?.data?.code, 'ERR_SERVICE_FLOOD');
    // The service and the connection are fine: a call works again once the flood's tail, still on its
    // way from the service when the call ended, has drained (a call made meanwhile may be ended by it).
    const after = await eventually(async () => {
      try {
        return text(await client.callTool({ name: 'legacyecho.echo', arguments: { text: 'after' } }));
      } catch {
        return undefined;
      }
    });
    assert.equal(after, 'after');
  });
});
