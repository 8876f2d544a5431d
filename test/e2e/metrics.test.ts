/**
 * /metrics end to end: a real gateway with the metrics listener on its own loopback port behind a
 * bearer token, real SDK clients of both eras making allowed, denied and rate-limited calls through
 * it to the real echo service, and the Prometheus text scraped and checked series by series.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ProtocolError } from '@modelcontextprotocol/client';
import { connect, echoService, eventually, startGateway, type Gateway } from '../helpers/harness.js';
import { parseMetrics, series } from '../helpers/metrics.js';
import { copyPolicies, edit } from '../helpers/policy.js';

const TOKEN = 'scrape-token-0123456789abcdef';

describe('/metrics', () => {
  let gw: Gateway;
  let metricsUrl: string;

  const scrape = async (headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) => fetch(metricsUrl, { headers });
  const metrics = async () => {
    const r = await scrape();
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parseMetrics(await r.text());
  };

  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-metrics-'));
    const tokenFile = path.join(dir, 'metrics-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    gw = await startGateway({
      services: { echo: echoService() },
      // Five calls of a tool at once, then one a minute: the sixth is refused by the rate limit.
      limits: { calls_per_minute: 1, burst: 5 },
      // One 2025 session per principal: a second one is refused by its ceiling.
      server: { max_sessions_per_principal: 1 },
      metrics: { listen: '127.0.0.1:0', token_file: tokenFile },
    });
    const m = /micro-mcp metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(gw.output());
    assert.ok(m, gw.output());
    metricsUrl = m[1]!;
    assert.notEqual(new URL(metricsUrl).port, new URL(gw.url).port, 'metrics listen on their own port');
  });
  after(async () => {
    await gw?.stop();
  });

  test('is refused without the bearer token or with another, and is not on the agent port', async () => {
    const none = await scrape({});
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="metrics"');
    assert.equal((await scrape({ authorization: `Bearer ${TOKEN.replace('0', '1')}` })).status, 401);
    assert.equal((await fetch(`${gw.url}/metrics`)).status, 404);
    assert.equal((await fetch(metricsUrl.replace('/metrics', '/other'), { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  });

  test('counts calls by service, tool, outcome and deciding rule; latencies, refusals, sessions, health', async () => {
    const before = await metrics();
    assert.equal(before.get(series('micro_mcp_service_up', { service: 'echo' })), 1);
    assert.equal(before.get(series('micro_mcp_calls_in_flight')), 0);

    // Allowed: three calls from a 2026-07-28 client (SDK 2.x), two from a 2025 session (SDK 1.x).
    const modern = await connect(gw, 'modern');
    for (let i = 0; i < 3; i++) await modern.callTool({ name: 'echo.echo', arguments: { text: `m${i}` } });
    const legacy = new V1Client({ name: 'metrics-v1', version: '1.0.0' });
    await legacy.connect(new V1Transport(new URL(gw.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${await gw.token()}` } } }));
    for (let i = 0; i < 2; i++) await legacy.callTool({ name: 'echo.echo', arguments: { text: `l${i}` } });

    // Denied twice: echo.slow is open-world (no annotations) and this token declares no purpose.
    const noPurpose = await connect(gw, 'modern', { token: await gw.token({ purpose: '' }) });
    let revision = '';
    for (let i = 0; i < 2; i++) {
      await assert.rejects(noPurpose.callTool({ name: 'echo.slow', arguments: { ms: 1 } }), (e: unknown) => {
        assert.ok(e instanceof ProtocolError);
        assert.equal(e.message, 'denied by policy: purpose_required');
        revision = (e.data as { policy_revision: string }).policy_revision;
        return true;
      });
    }
    // Refused after the allow: the sixth echo.echo of this principal within the minute.
    await assert.rejects(modern.callTool({ name: 'echo.echo', arguments: { text: 'sixth' } }), /rate limit reached for this tool/);

    const okCalls = series('micro_mcp_calls_total', { service: 'echo', tool: 'echo.echo', outcome: 'ok', rule: 'service_call_scope' });
    // Outcome records are written off the answer's path: wait until the fifth is counted.
    const m = await eventually(async (): Promise<Map<string, number> | undefined> => {
      const s = await metrics();
      return s.get(series('micro_mcp_audit_write_duration_seconds_count', { kind: 'outcome' })) === 6 ? s : undefined;
    });
    assert.ok(m);
    assert.equal(m.get(okCalls), 5);
    assert.equal(m.get(series('micro_mcp_calls_total', { service: 'echo', tool: 'echo.slow', outcome: 'denied', rule: 'purpose_required' })), 2);
    assert.equal(m.get(series('micro_mcp_calls_total', { service: 'echo', tool: 'echo.echo', outcome: 'refused', rule: 'service_call_scope' })), 1);
    assert.equal(m.get(series('micro_mcp_limit_refusals_total', { cause: 'rate' })), 1);
    // Every call was decided and recorded; only the five allowed and admitted ones reached the service.
    assert.equal(m.get(series('micro_mcp_audit_write_duration_seconds_count', { kind: 'decision' })), 8);
    assert.equal(m.get(series('micro_mcp_service_duration_seconds_count', { service: 'echo' })), 5);
    assert.equal(m.get(series('micro_mcp_call_duration_seconds_count', { service: 'echo' })), 5);
    assert.ok(
      m.get(series('micro_mcp_call_duration_seconds_sum', { service: 'echo' }))! >=
        m.get(series('micro_mcp_service_duration_seconds_sum', { service: 'echo' }))!,
    );
    // Both engines decided each call (and the list phase, which the clients' tool lookups may add).
    const rego = m.get(series('micro_mcp_decision_duration_seconds_count', { engine: 'rego' }))!;
    assert.ok(rego >= 8, `rego decided ${rego} times`);
    assert.equal(m.get(series('micro_mcp_decision_duration_seconds_count', { engine: 'cedar' })), rego);
    assert.equal(m.get(series('micro_mcp_policy_revision_info', { revision })), 1);
    assert.equal(m.get(series('micro_mcp_policy_reload_errors_total')), 0);
    // The 2025 client holds a session; nothing is in flight between calls.
    assert.equal(m.get(series('micro_mcp_sessions')), 1);
    assert.equal(m.get(series('micro_mcp_calls_in_flight')), 0);
    assert.equal(m.get(series('micro_mcp_service_restarts', { service: 'echo' })), 0);
    assert.ok(m.get('process_resident_memory_bytes')! > 0, 'process metrics are exported');

    // A second 2025 session for the same principal is over its ceiling: counted by cause.
    await assert.rejects(connect(gw, 'legacy'), /Too many sessions for this principal/);
    const after = await metrics();
    assert.equal(after.get(series('micro_mcp_limit_refusals_total', { cause: 'sessions_per_principal' })), 1);
    assert.equal(after.get(series('micro_mcp_sessions')), 1);

    await legacy.close();
    await modern.close();
    await noPurpose.close();
  });
});

describe('/metrics: policy revision and reload errors', () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  let metricsUrl: string;
  before(async () => {
    policies = copyPolicies();
    gw = await startGateway({
      services: { echo: echoService() },
      policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar }, watch: true },
      // Loopback without a token: open to local scrapers only.
      metrics: { listen: '127.0.0.1:0' },
    });
    metricsUrl = /micro-mcp metrics on (\S+)/.exec(gw.output())![1]!;
  });
  after(async () => {
    await gw?.stop();
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  const revisions = async () => {
    const m = parseMetrics(await (await fetch(metricsUrl)).text());
    return { revs: [...m.keys()].filter((k) => k.startsWith('micro_mcp_policy_revision_info{')), errors: m.get('micro_mcp_policy_reload_errors_total') };
  };

  test('a reload changes the revision series; a broken edit counts as a reload error and keeps the revision', async () => {
    const first = await revisions();
    assert.equal(first.revs.length, 1);
    assert.equal(first.errors, 0);
    edit(path.join(policies.rego, 'fs.rego'), '"eng": {"/eng", "/public"}', '"eng": {"/public"}');
    const second = await eventually(async () => {
      const r = await revisions();
      return r.revs.length === 1 && r.revs[0] !== first.revs[0] ? r : undefined;
    }, 15_000);
    assert.ok(second);
    assert.equal(second.errors, 0);
    writeFileSync(path.join(policies.rego, 'zz_broken.rego'), 'package micro_mcp.authz\n\n_x if {\n\tinput.phase ==\n}\n');
    const third = await eventually(async () => {
      const r = await revisions();
      return r.errors === 1 ? r : undefined;
    }, 15_000);
    assert.ok(third);
    assert.deepEqual(third.revs, second.revs, 'the last good set keeps running');
  });
});
