/**
 * Traces end to end: a real gateway exporting with the OpenTelemetry SDK's OTLP/HTTP exporter to a
 * real receiver in this test (node:http on 127.0.0.1, decoding the OTLP JSON), real SDK clients,
 * the real echo service over stdio and a remote Streamable HTTP service. Checked: the span tree of
 * one call, the decision record carrying the same trace and span ids, the trace context each
 * service receives (stdio `_meta`, remote HTTP header), and the agent's traceparent continued only
 * when the gateway trusts it.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createMcpHandler, Server as McpServer } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, startGateway, type Gateway } from '../helpers/harness.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  status: { code?: number; message?: string };
  service: string;
}

/** OTLP JSON ids are hex; the JS exporter may also send base64 (as protobuf-JSON does): normalise. */
const hex = (id: unknown, bytes: number): string => {
  if (typeof id !== 'string' || id === '') return '';
  return id.length === bytes * 2 && /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex');
};

function attrValue(v: Record<string, unknown>): unknown {
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('arrayValue' in v) return ((v.arrayValue as { values?: Array<Record<string, unknown>> }).values ?? []).map(attrValue);
  return undefined;
}

/** A minimal OTLP/HTTP traces receiver: POST /v1/traces with JSON bodies; every span kept. */
async function startReceiver(): Promise<{ url: string; spans: OtlpSpan[]; server: Server }> {
  const spans: OtlpSpan[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !(req.headers['content-type'] ?? '').includes('application/json')) {
        res.writeHead(415).end();
        return;
      }
      const msg = JSON.parse(body) as { resourceSpans: Array<Record<string, any>> };
      for (const rs of msg.resourceSpans) {
        const service = (rs.resource?.attributes ?? []).find((a: { key: string }) => a.key === 'service.name')?.value?.stringValue;
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            spans.push({
              traceId: hex(s.traceId, 16),
              spanId: hex(s.spanId, 8),
              parentSpanId: hex(s.parentSpanId, 8),
              name: s.name,
              kind: s.kind,
              attributes: Object.fromEntries((s.attributes ?? []).map((a: { key: string; value: Record<string, unknown> }) => [a.key, attrValue(a.value)])),
              status: s.status ?? {},
              service,
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, spans, server };
}

/** A remote MCP service in this process that keeps the trace headers of every request it gets. */
async function startRemote(): Promise<{ url: string; seen: Array<{ traceparent: string | undefined; method: string | undefined }>; server: Server }> {
  const seen: Array<{ traceparent: string | undefined; method: string | undefined }> = [];
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
  const server = createServer((req, res) => {
    seen.push({ traceparent: req.headers.traceparent as string | undefined, method: req.headers['mcp-method'] as string | undefined });
    void node(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, seen, server };
}

const AGENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const AGENT_SPAN = '00f067aa0ba902b7';
const AGENT_TRACEPARENT = `00-${AGENT_TRACE}-${AGENT_SPAN}-01`;

describe('traces', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let remote: Awaited<ReturnType<typeof startRemote>>;
  let gw: Gateway;

  before(async () => {
    receiver = await startReceiver();
    remote = await startRemote();
    gw = await startGateway({
      services: { echo: echoService(), remote: { transport: 'http', url: remote.url } },
      tracing: { otlp_endpoint: receiver.url, service_name: 'gw-under-test' },
    });
    await eventually(async () => {
      const r = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ state: string }> };
      return r.services.every((s) => s.state === 'ready');
    }, 15_000);
  });
  after(async () => {
    await gw?.stop();
    remote?.server.close();
    receiver?.server.close();
  });

  const spansOf = (traceId: string) => receiver.spans.filter((s) => s.traceId === traceId);
  const decisionFor = (traceId: string) =>
    readRecords(path.join(gw.dir, 'audit')).find((l) => l.rec.kind === 'decision' && (l.rec.trace as { trace_id?: string } | undefined)?.trace_id === traceId)
      ?.rec;

  test('a call is one span with authenticate, policy (one child per engine), audit and service children; the audit record and the stdio service carry its ids', async () => {
    // An untrusted agent's traceparent (header and _meta) is not continued: the call starts a new trace.
    const client = await connect(gw, 'modern');
    const r = await client.callTool({ name: 'echo.env', arguments: {}, _meta: { traceparent: AGENT_TRACEPARENT } });
    await client.close();
    const sent = (r.structuredContent as { traceparent?: string }).traceparent;
    assert.ok(sent, 'the stdio service received a traceparent in _meta');
    const [, traceId, serviceSpanId, flags] = sent.split('-');
    assert.notEqual(traceId, AGENT_TRACE, 'an untrusted traceparent starts a new trace');
    assert.equal(flags, '01');

    const spans = await eventually(() => {
      const s = spansOf(traceId!);
      return s.length >= 7 ? s : undefined;
    });
    assert.ok(spans);
    const root = spans.find((s) => s.name === 'tools/call echo.env');
    assert.ok(root, JSON.stringify(spans.map((s) => s.name)));
    assert.equal(root.parentSpanId, '', 'a root span');
    assert.equal(root.service, 'gw-under-test');
    assert.equal(root.kind, 2, 'SERVER');
    assert.equal(root.attributes['micro_mcp.outcome'], 'ok');
    assert.equal(root.attributes['micro_mcp.service'], 'echo');
    const children = spans.filter((s) => s.parentSpanId === root.spanId).map((s) => s.name);
    assert.deepEqual(children.sort(), ['audit', 'authenticate', 'policy', 'service echo']);
    const policy = spans.find((s) => s.name === 'policy')!;
    assert.equal(policy.attributes['micro_mcp.allow'], true);
    assert.deepEqual(
      spans
        .filter((s) => s.parentSpanId === policy.spanId)
        .map((s) => `${s.name}:${s.attributes['micro_mcp.allow']}`)
        .sort(),
      ['policy cedar:true', 'policy rego:true'],
    );
    const service = spans.find((s) => s.name === 'service echo')!;
    assert.equal(service.spanId, serviceSpanId, "the service got the service span's context");
    assert.equal(service.kind, 3, 'CLIENT');
    assert.equal(spans.length, 7);

    // From the trace to the decision and back: the decision record names this trace and the call's span.
    const d = decisionFor(traceId!);
    assert.ok(d, 'a decision record carries the trace id');
    assert.deepEqual(d.trace, { trace_id: traceId, span_id: root.spanId });
    assert.equal(d.decision_id, root.attributes['micro_mcp.decision_id']);
  });

  test('a remote service receives the traceparent HTTP header of its service span', async () => {
    const client = await connect(gw, 'legacy', { token: await gw.token({ scopes: ['remote:call'] }) });
    const before = remote.seen.length;
    const r = await client.callTool({ name: 'remote.echo', arguments: { text: 'traced' } });
    await client.close();
    assert.deepEqual(r.content, [{ type: 'text', text: 'traced' }]);
    const calls = remote.seen.slice(before).filter((s) => s.method === 'tools/call');
    assert.equal(calls.length, 1);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(calls[0]!.traceparent ?? '');
    assert.ok(m, `traceparent header: ${calls[0]!.traceparent}`);
    const spans = await eventually(() => {
      const s = spansOf(m[1]!);
      return s.some((x) => x.name === 'tools/call remote.echo') ? s : undefined;
    });
    assert.ok(spans);
    const service = spans.find((s) => s.spanId === m[2]);
    assert.equal(service?.name, 'service remote');
    const root = spans.find((s) => s.name === 'tools/call remote.echo')!;
    assert.equal(service.parentSpanId, root.spanId);
    assert.deepEqual(decisionFor(m[1]!)?.trace, { trace_id: m[1], span_id: root.spanId });
  });

  test('a denied call is traced too: its span ends in error with the deciding rule, and the record names it', async () => {
    const client = await connect(gw, 'modern', { token: await gw.token({ purpose: '' }) });
    await assert.rejects(client.callTool({ name: 'echo.slow', arguments: { ms: 1 } }), /denied by policy: purpose_required/);
    await client.close();
    const root = await eventually(() => receiver.spans.find((s) => s.name === 'tools/call echo.slow'));
    assert.ok(root);
    assert.equal(root.attributes['micro_mcp.outcome'], 'denied');
    assert.equal(root.attributes['micro_mcp.rule'], 'purpose_required');
    assert.equal(root.status.code, 2, 'ERROR');
    assert.deepEqual(decisionFor(root.traceId)?.trace, { trace_id: root.traceId, span_id: root.spanId });
    const names = spansOf(root.traceId)
      .filter((s) => s.parentSpanId === root.spanId)
      .map((s) => s.name)
      .sort();
    assert.deepEqual(names, ['audit', 'authenticate', 'policy'], 'nothing was forwarded');
  });
});

describe('traces with trust_traceparent', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let gw: Gateway;
  before(async () => {
    receiver = await startReceiver();
    gw = await startGateway({
      services: { echo: echoService() },
      tracing: { otlp_endpoint: receiver.url, trust_traceparent: true },
    });
  });
  after(async () => {
    await gw?.stop();
    receiver?.server.close();
  });

  test("the agent's traceparent (HTTP header) parents the call's span", async () => {
    const client = await connect(gw, 'modern');
    // The SDK client sends no traceparent of its own: set it as a header on this request.
    const token = await gw.token();
    await client.close();
    const r = await fetch(gw.mcpUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'echo.echo',
        traceparent: AGENT_TRACEPARENT,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: {
          name: 'echo.echo',
          arguments: { text: 'hi' },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
            'io.modelcontextprotocol/clientCapabilities': {},
          },
        },
      }),
    });
    assert.equal(r.status, 200);
    await r.text();
    const root = await eventually(() => receiver.spans.find((s) => s.name === 'tools/call echo.echo'));
    assert.ok(root);
    assert.equal(root.traceId, AGENT_TRACE);
    assert.equal(root.parentSpanId, AGENT_SPAN);
    assert.equal(root.service, 'micro-mcp', 'the default service.name');
  });

  test("the agent's _meta traceparent (the MCP convention) parents the call's span", async () => {
    const other = '0af7651916cd43dd8448eb211c80319c';
    const client = await connect(gw, 'legacy');
    await client.callTool({ name: 'echo.echo', arguments: { text: 'meta' }, _meta: { traceparent: `00-${other}-b7ad6b7169203331-01` } });
    await client.close();
    const root = await eventually(() => receiver.spans.find((s) => s.traceId === other && s.name === 'tools/call echo.echo'));
    assert.ok(root);
    assert.equal(root.parentSpanId, 'b7ad6b7169203331');
  });
});

describe('traces with the collector down', () => {
  let gw: Gateway;
  before(async () => {
    // Port 1 (tcpmux): nothing here listens there, so every export is refused. A port that was free a
    // moment ago is not enough: with tests running side by side another test's server took it once.
    gw = await startGateway({ services: { echo: echoService() }, tracing: { otlp_endpoint: 'http://127.0.0.1:1/v1/traces' } });
  });
  after(async () => {
    await gw?.stop();
  });

  test('calls go on; the lost spans are logged', { timeout: 30_000 }, async () => {
    const client = await connect(gw, 'modern');
    const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'untraced' } });
    await client.close();
    assert.deepEqual(r.content, [{ type: 'text', text: 'untraced' }]);
    // The exporter retries a refused connection until its 10 s export timeout before it reports the
    // loss (alone this takes ~8.5 s after the 1 s batch delay), so the bound is past both.
    const line = await eventually(
      () =>
        gw
          .output()
          .split('\n')
          .find((l) => l.includes('trace export failed; spans dropped')),
      20_000,
    );
    assert.ok(line);
    const rec = JSON.parse(line) as { spans_lost: number; err: string };
    assert.ok(rec.spans_lost >= 5, `${rec.spans_lost} spans lost`);
    assert.match(rec.err, /ECONNREFUSED/);
  });
});
