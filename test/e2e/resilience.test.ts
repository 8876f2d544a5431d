/**
 * Service resilience end to end: a real gateway, the real echo service (stdio, bubblewrap) and a
 * remote Streamable HTTP service in this process, real SDK clients. Per-tool timeouts, the circuit
 * breaker (open -> fast refusal -> half-open -> closed) in /readyz, the metrics and the audit, the
 * concurrency cap, a crashed stdio service restarted, a remote service reconnected.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Client, ProtocolError } from '@modelcontextprotocol/client';
import { createMcpHandler, Server as McpServer } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, startGateway, type Gateway } from '../helpers/harness.js';
import { parseMetrics, series } from '../helpers/metrics.js';

interface ServiceHealth {
  name: string;
  state: string;
  restarts: number;
  breaker: string;
  in_flight: number;
}

/** A remote MCP service (one `echo` tool) on `port` (0: any). */
async function remoteService(port = 0): Promise<Server> {
  const handler = createMcpHandler(() => {
    const s = new McpServer({ name: 'remote-echo', version: '1' }, { capabilities: { tools: {} } });
    s.setRequestHandler('tools/list', async () => ({
      tools: [
        { name: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } } }, annotations: { readOnlyHint: true, openWorldHint: false } },
      ],
    }));
    s.setRequestHandler('tools/call', async (req) => ({ content: [{ type: 'text', text: String((req.params.arguments as { text?: string }).text) }] }));
    return s;
  });
  const node = toNodeHandler(handler);
  const server = createServer((req, res) => void node(req, res));
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return server;
}

/** The error a call fails with (a JSON-RPC error from the gateway). */
async function failure(p: Promise<unknown>): Promise<ProtocolError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ProtocolError, String(e));
    return e;
  }
  throw new Error('the call succeeded');
}

describe('service resilience', () => {
  let gw: Gateway;
  let client: Client;
  let remote: Server;
  let remotePort: number;
  let metricsUrl: string;

  const health = async (name: string): Promise<ServiceHealth> => {
    const r = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: ServiceHealth[] };
    return r.services.find((s) => s.name === name)!;
  };
  const text = (r: { content?: unknown }) => (r.content as Array<{ text?: string }>)[0]?.text;

  before(async () => {
    remote = await remoteService();
    remotePort = (remote.address() as AddressInfo).port;
    gw = await startGateway({
      services: {
        // Two timeouts in a row open the breaker for 1.5 s; echo.slow times out after 300 ms.
        echo: echoService({ breaker: { failures: 2, cooldown_ms: 1500 }, tools: { slow: { call_timeout_ms: 300 } } }),
        busy: echoService({ max_concurrent: 1 }, undefined, 'echo://busy/info'),
        remote: { transport: 'http', url: `http://127.0.0.1:${remotePort}/mcp`, restart: { initial_delay_ms: 50, max_delay_ms: 400 } },
      },
      metrics: { listen: '127.0.0.1:0' },
    });
    metricsUrl = /micro-mcp metrics on (\S+)/.exec(gw.output())![1]!;
    client = await connect(gw, 'modern', { token: await gw.token({ scopes: ['echo:call', 'busy:call', 'remote:call'] }) });
    await eventually(async () => (await health('remote')).state === 'ready' && (await health('busy')).state === 'ready', 15_000);
  });
  after(async () => {
    await client?.close();
    await gw?.stop();
    remote?.closeAllConnections();
    remote?.close();
  });

  test('per-tool timeout; the breaker opens after two, refuses at once (audited), probes after the cool-down and closes', async () => {
    assert.equal((await health('echo')).breaker, 'closed');
    for (let i = 0; i < 2; i++) {
      const t0 = Date.now();
      const e = await failure(client.callTool({ name: 'echo.slow', arguments: { ms: 30_000 } }));
      assert.equal((e.data as { code: string }).code, 'ERR_SERVICE_TIMEOUT');
      assert.equal(e.message, 'service "echo" did not answer in time');
      // The tool's 300 ms, not the service's 60 s.
      assert.ok(Date.now() - t0 < 10_000);
    }
    assert.equal((await health('echo')).breaker, 'open');
    const m = parseMetrics(await (await fetch(metricsUrl)).text());
    assert.equal(m.get(series('micro_mcp_service_breaker_state', { service: 'echo' })), 2);
    assert.equal(m.get(series('micro_mcp_service_breaker_state', { service: 'busy' })), 0);

    const open = await failure(client.callTool({ name: 'echo.echo', arguments: { text: 'while open' } }));
    assert.equal(open.code, -32004);
    assert.equal(open.message, 'service "echo" is failing; calls are refused for now (circuit breaker open), retry later');
    const data = open.data as { code: string; service: string; retry_after_s: number; decision_id: string };
    assert.equal(data.code, 'ERR_SERVICE_CIRCUIT_OPEN');
    assert.equal(data.service, 'echo');
    assert.ok(data.retry_after_s >= 1 && data.retry_after_s <= 2);
    // Decided and recorded, then refused without reaching the service: the outcome has no service time.
    const outcome = await eventually(
      () => readRecords(path.join(gw.dir, 'audit')).find((l) => l.rec.kind === 'outcome' && l.rec.decision_id === data.decision_id)?.rec,
    );
    assert.ok(outcome);
    assert.equal(outcome.outcome, 'refused');
    assert.deepEqual(outcome.error, { code: 'ERR_SERVICE_CIRCUIT_OPEN', message: open.message });
    assert.equal((outcome.metrics as Record<string, unknown>).timer_service_ns, undefined);

    await eventually(async () => (await health('echo')).breaker === 'half_open', 10_000);
    const probe = await client.callTool({ name: 'echo.echo', arguments: { text: 'probe' } });
    assert.equal(text(probe), 'probe');
    assert.equal((await health('echo')).breaker, 'closed');
    const after = parseMetrics(await (await fetch(metricsUrl)).text());
    assert.equal(after.get(series('micro_mcp_service_breaker_state', { service: 'echo' })), 0);
    assert.equal(after.get(series('micro_mcp_limit_refusals_total', { cause: 'circuit_open' })), 1);
    assert.equal(after.get(series('micro_mcp_calls_total', { service: 'echo', tool: 'echo.slow', outcome: 'timeout', rule: 'service_call_scope' })), 2);
  });

  test('concurrency cap: with one call in flight the next is refused at once with ERR_SERVICE_BUSY', async () => {
    const ac = new AbortController();
    const slow = client.callTool({ name: 'busy.slow', arguments: { ms: 30_000 } }, { signal: ac.signal }).catch((e: unknown) => e);
    await eventually(async () => (await health('busy')).in_flight === 1);
    const e = await failure(client.callTool({ name: 'busy.echo', arguments: { text: 'second' } }));
    assert.equal(e.message, 'service "busy" has 1 calls in flight; retry shortly');
    assert.deepEqual(
      { ...(e.data as object), decision_id: undefined },
      { code: 'ERR_SERVICE_BUSY', service: 'busy', max_concurrent: 1, decision_id: undefined },
    );
    ac.abort();
    await slow;
    await eventually(async () => (await health('busy')).in_flight === 0);
    assert.equal(text(await client.callTool({ name: 'busy.echo', arguments: { text: 'now' } })), 'now');
    // A cancelled call says nothing about the service's health.
    assert.equal((await health('busy')).breaker, 'closed');
  });

  test('a crashed stdio service is restarted and serves again', async () => {
    const before = (await health('busy')).restarts;
    await client.callTool({ name: 'busy.crash', arguments: {} });
    await eventually(async () => {
      const h = await health('busy');
      return h.restarts === before + 1 && h.state === 'ready';
    }, 15_000);
    assert.equal(text(await client.callTool({ name: 'busy.echo', arguments: { text: 'back' } })), 'back');
  });

  test('a remote service that went away is reconnected once it is back', async () => {
    assert.equal(text(await client.callTool({ name: 'remote.echo', arguments: { text: 'one' } })), 'one');
    remote.closeAllConnections();
    await new Promise<void>((r) => remote.close(() => r()));
    const e = await failure(client.callTool({ name: 'remote.echo', arguments: { text: 'gone' } }));
    assert.equal((e.data as { code: string }).code, 'ERR_SERVICE_UNAVAILABLE');
    assert.notEqual((await health('remote')).state, 'ready');
    remote = await remoteService(remotePort);
    await eventually(async () => (await health('remote')).state === 'ready', 15_000);
    assert.equal((await health('remote')).restarts, 1);
    assert.equal(text(await client.callTool({ name: 'remote.echo', arguments: { text: 'two' } })), 'two');
  });
});
