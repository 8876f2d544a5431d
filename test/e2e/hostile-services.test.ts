/**
 * A hostile service behind a real gateway (issue #12, point 6): its answers and its notifications
 * are capped per service (and per tool), a call that breaks a cap ends with a clear error and an
 * audited outcome, and it sees only the `_meta` keys the protocol needs and the config lists.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { CREDENTIAL_META_KEY } from '../../schemas/contracts/service-credential.js';
import { readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, type Gateway, startGateway } from '../helpers/harness.js';

let gw: Gateway;
let client: Client;

before(async () => {
  gw = await startGateway({
    services: {
      // Capped at 64 KiB per answer and 20 notifications a second per call; big may send 256 KiB.
      capped: echoService({ max_result_bytes: 65536, max_notifications_per_s: 20, tools: { big: { max_result_bytes: 262144 } } }),
      small: echoService({ max_result_bytes: 65536 }, undefined, 'echo://small/info'),
      metaok: echoService({ forward_meta: ['example.com/trace'] }, undefined, 'echo://metaok/info'),
      // The same fixture spoken to in the 2025 era (small negotiates 2026-07-28).
      old: echoService({ era: 'legacy' }, undefined, 'echo://old/info'),
    },
  });
  client = await connect(gw, 'modern', { token: await gw.token({ scopes: ['capped:call', 'small:call', 'metaok:call', 'old:call'] }) });
});
after(async () => {
  await client?.close();
  await gw?.stop();
});

/** The outcome record of the last decision on `tool`. */
async function lastOutcome(tool: string): Promise<Record<string, any>> {
  const found = await eventually((): Record<string, any> | undefined => {
    const recs = readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec as Record<string, any>);
    const d = recs.filter((r) => r.kind === 'decision' && r.tool === tool).at(-1);
    return d && recs.find((r) => r.kind === 'outcome' && r.decision_id === d.decision_id);
  });
  return found!;
}

const text = (r: { content?: unknown }) => (r.content as Array<{ text: string }>)[0]!.text;

describe('caps on what services send', () => {
  test('an answer under the cap passes; one over it ends the call with ERR_RESULT_TOO_LARGE, audited', async () => {
    assert.equal(text(await client.callTool({ name: 'small.big', arguments: { bytes: 30_000 } })).length, 30_000);
    const e = await client.callTool({ name: 'small.big', arguments: { bytes: 70_000 } }).then(
      () => undefined,
      (err: { code?: number; message: string; data?: { code?: string; max_bytes?: number } }) => err,
    );
    assert.equal(e?.code, -32004);
    assert.equal(e?.message, 'service "small" answered with more than 65536 bytes; the answer was dropped');
    assert.equal(e?.data?.code, 'ERR_RESULT_TOO_LARGE');
    const o = await lastOutcome('small.big');
    assert.equal(o.outcome, 'service_error');
    assert.deepEqual(o.error, { code: 'ERR_RESULT_TOO_LARGE', message: 'service "small" answered with more than 65536 bytes; the answer was dropped' });
  });

  test('a tool may have its own cap', async () => {
    assert.equal(text(await client.callTool({ name: 'capped.big', arguments: { bytes: 200_000 } })).length, 200_000);
  });

  test('a message far past the largest cap is never read whole: the connection drops, the call fails, the service comes back', async () => {
    const e = await client.callTool({ name: 'small.big', arguments: { bytes: 500_000 } }).then(
      () => undefined,
      (err: { data?: { code?: string } }) => err,
    );
    assert.equal(e?.data?.code, 'ERR_SERVICE_UNAVAILABLE');
    assert.equal((await lastOutcome('small.big')).error.code, 'ERR_SERVICE_UNAVAILABLE');
    await eventually(async () => {
      try {
        return text(await client.callTool({ name: 'small.echo', arguments: { text: 'back' } })) === 'back';
      } catch {
        return false;
      }
    });
  });

  test('a flood of notifications ends the call with ERR_SERVICE_FLOOD, audited; a few pass', async () => {
    const seen: number[] = [];
    const ok = await client.callTool({ name: 'capped.flood', arguments: { count: 10 } }, { onprogress: (p) => seen.push(p.progress) });
    assert.equal(text(ok), 'flooded 10');
    assert.equal(seen.length, 10);
    const e = await client.callTool({ name: 'capped.flood', arguments: { count: 500 } }, { onprogress: () => undefined }).then(
      () => undefined,
      (err: { message: string; data?: { code?: string } }) => err,
    );
    assert.equal(e?.data?.code, 'ERR_SERVICE_FLOOD');
    assert.equal(e?.message, 'service "capped" sent more than 20 notifications a second; call ended');
    const o = await lastOutcome('capped.flood');
    assert.deepEqual([o.outcome, o.error.code], ['service_error', 'ERR_SERVICE_FLOOD']);
  });

  test('an answer that is not a result of its method is dropped with ERR_SERVICE_ERROR, audited, in both service eras; the service serves the next call', async () => {
    for (const svc of ['small', 'old']) {
      const e = await client.callTool({ name: `${svc}.malformed`, arguments: {} }).then(
        () => undefined,
        (err: { code?: number; message: string; data?: Record<string, unknown> }) => err,
      );
      const message = `service "${svc}" answered tools/call with an invalid result; the answer was dropped`;
      assert.equal(e?.code, -32004);
      assert.equal(e?.message, message);
      assert.deepEqual(e?.data, { code: 'ERR_SERVICE_ERROR', service: svc });
      const o = await lastOutcome(`${svc}.malformed`);
      assert.equal(o.outcome, 'service_error');
      assert.deepEqual(o.error, { code: 'ERR_SERVICE_ERROR', message });
      assert.equal(text(await client.callTool({ name: `${svc}.echo`, arguments: { text: 'still here' } })), 'still here');
    }
  });

  test("a service sees only the agent's _meta keys its config lists (none by default), plus what the protocol needs (the credential, the gateway's progress token)", async () => {
    const meta = { 'example.com/trace': 't-1', 'micro-mcp/purpose': 'e2e', 'agent.example/secret': 'do-not-forward' };
    const keys = async (svc: string) =>
      ((await client.callTool({ name: `${svc}.env`, arguments: {}, _meta: meta })).structuredContent as { meta_keys: string[] }).meta_keys;
    assert.deepEqual(await keys('small'), [CREDENTIAL_META_KEY, 'progressToken']);
    assert.deepEqual(await keys('metaok'), [CREDENTIAL_META_KEY, 'example.com/trace', 'progressToken']);
  });
});
