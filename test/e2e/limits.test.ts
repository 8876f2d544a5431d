/**
 * Limits through the real gateway: a rate per principal x service x tool and a ceiling on calls in
 * flight per principal, each refusal a clear JSON-RPC error and an audited outcome of the decision;
 * an oversized body is an audited limit refusal too.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, echoService, eventually, rawPost, startGateway, type Gateway } from '../helpers/harness.js';

function records(gw: Gateway): Array<Record<string, any>> {
  const dir = path.join(gw.dir, 'audit');
  return readdirSync(dir)
    .filter((f) => f.startsWith('audit.jsonl'))
    .flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as Record<string, any>);
}

describe('limits', () => {
  let gw: Gateway;
  const marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-limits-')), 'marker.log');
  before(async () => {
    gw = await startGateway({
      server: { max_body_bytes: 4096 },
      limits: { calls_per_minute: 60, burst: 3, concurrent_per_principal: 2 },
      services: { echo: echoService({}, marker) },
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test('a rate per principal x tool: a burst, then a clear refusal that is audited as the outcome of its decision', async () => {
    const alice = await connect(gw, 'modern', { token: await gw.token({ sub: 'rate-alice' }) });
    for (let i = 0; i < 3; i++) await alice.callTool({ name: 'echo.echo', arguments: { text: `n${i}` } });
    await assert.rejects(alice.callTool({ name: 'echo.echo', arguments: { text: 'one too many' } }), (e: Error & { code?: number }) => {
      assert.equal(e.code, -32029);
      assert.match(e.message, /rate limit reached for this tool; retry in \d+ s/);
      return true;
    });
    // Another tool and another principal have their own budgets.
    await alice.callTool({ name: 'echo.progress', arguments: { steps: 1 } });
    const bob = await connect(gw, 'legacy', { token: await gw.token({ sub: 'rate-bob' }) });
    await bob.callTool({ name: 'echo.echo', arguments: { text: 'bob' } });
    const refused = (await eventually(() => records(gw).find((r) => r.kind === 'outcome' && r.outcome === 'refused' && r.error?.code === 'ERR_RATE_LIMITED')))!;
    const decision = records(gw).find((r) => r.kind === 'decision' && r.decision_id === refused.decision_id)!;
    assert.equal(decision.result.allow, true, 'the refusal is the outcome of an allowed decision');
    assert.equal(decision.principal.id, 'rate-alice');
    await alice.close();
    await bob.close();
  });

  test('a ceiling on calls in flight per principal', async () => {
    const client = await connect(gw, 'legacy', { token: await gw.token({ sub: 'busy-carol' }) });
    const ac = new AbortController();
    const slow = ['a', 'b'].map((tag) =>
      client.callTool({ name: 'echo.slow', arguments: { tag: `busy-${tag}`, ms: 20_000 } }, { signal: ac.signal }).catch(() => undefined),
    );
    const log = () => (existsSync(marker) ? readFileSync(marker, 'utf8') : '');
    await eventually(() => log().includes('started busy-a') && log().includes('started busy-b'));
    await assert.rejects(client.callTool({ name: 'echo.progress', arguments: { steps: 1 } }), /too many calls in flight/);
    ac.abort();
    await Promise.all(slow);
    // The slots are free again once the calls ended.
    await eventually(async () => {
      try {
        await client.callTool({ name: 'echo.progress', arguments: { steps: 1 } });
        return true;
      } catch {
        return false;
      }
    });
    await client.close();
  });

  test('an oversized body is refused (413) and audited as a limit refusal', async () => {
    const token = await gw.token();
    const r = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { pad: 'x'.repeat(8192) } }), {
      authorization: `Bearer ${token}`,
    });
    assert.equal(r.status, 413);
    const requestId = r.headers.get('x-request-id');
    const ev = (await eventually(() => records(gw).find((x) => x.kind === 'event' && x.type === 'limit_refused' && x.request_id === requestId)))!;
    assert.equal(ev.details.limit, 'max_body_bytes');
  });
});
