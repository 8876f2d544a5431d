/**
 * Policy you can trust (issue #10), end to end: a real gateway process, real services as child
 * processes, real Rego (WASM) and Cedar engines, real SDK clients. Resource facts come from each
 * service's declaration, whatever the service is called: a files service configured as `docs` and a
 * third-party service whose named facts come from JSON pointers get policies in both languages.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { codeReadFlags } from '../helpers/attacks.js';
import { toolErrorOf } from '../corpora/harness.js';
import { connect, DIST, echoService, type Gateway, modernEnvelope, rawPost, startGateway } from '../helpers/harness.js';
import { addPurposeHosts, allowed, call, copyPolicies, denied, edit, FS_SAMPLE, fsService, HTTP_RESOURCE, reasonKeys, runCli } from '../helpers/policy.js';

/** Every record of the gateway's audit log, oldest first. */
function records(gw: Gateway): Array<Record<string, any>> {
  const file = path.join(gw.dir, 'audit', 'audit.jsonl');
  if (!existsSync(file)) return [];
  const out: Array<Record<string, any>> = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    try {
      out.push(JSON.parse(l) as Record<string, any>);
    } catch {
      // a record being appended right now
    }
  }
  return out;
}

describe('resource facts by declaration, for any service name (rego + cedar)', () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  const clients: Client[] = [];

  before(async () => {
    policies = copyPolicies();
    // Rules on the declared facts of two services src/policy has never heard of, in both languages.
    writeFileSync(
      path.join(policies.rego, 'zz_third_party.rego'),
      [
        'package micro_mcp.authz',
        '',
        '_denies contains "docs_path_private: /eng is private in the docs service" if {',
        '\tinput.action == "call_tool"',
        '\tinput.tool.namespace == "docs"',
        '\tinput.resource.root == "sample"',
        '\tstartswith(input.resource.path, "/eng")',
        '}',
        '',
        '_denies contains "tickets_topic_forbidden: this topic may not be echoed" if {',
        '\tinput.action == "call_tool"',
        '\tinput.tool.namespace == "tickets"',
        '\tinput.resource.topic == "secret"',
        '}',
        '',
      ].join('\n'),
    );
    writeFileSync(
      path.join(policies.cedar, 'zz_third_party.cedar'),
      [
        '@id("docs_path_private")',
        '@reason("/eng is private in the docs service")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource in MicroMcp::Service::"docs")',
        'when { context.resource has root && context.resource.root == "sample" && context.resource has path && context.resource.path like "/eng*" };',
        '',
        '@id("tickets_topic_forbidden")',
        '@reason("this topic may not be echoed")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource in MicroMcp::Service::"tickets")',
        'when { context.resource has topic && context.resource.topic == "secret" };',
        '',
      ].join('\n'),
    );
    // The policy author declares the named fact in the Cedar schema (strict validation needs it).
    edit(path.join(policies.cedar, 'schema.cedarschema'), '    root?: String,', '    root?: String,\n    topic?: String,');
    gw = await startGateway({
      services: {
        docs: { ...fsService(FS_SAMPLE), resource: { kind: 'path', arg: 'path', root: 'sample' } },
        tickets: echoService({ resource: { facts: { topic: '/text' } } }),
      },
      policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } },
    });
  });
  after(async () => {
    for (const c of clients) await c.close();
    await gw?.stop();
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  const as = async (sub: string) => {
    const c = await connect(gw, 'modern', { token: await gw.token({ sub, groups: [], scopes: ['docs:call', 'tickets:call'] }) });
    clients.push(c);
    return c;
  };

  test('a files service configured as docs: its path facts reach both engines, which deny /eng and allow /public', async () => {
    const c = await as('docs-reader');
    const ok = allowed(await call(c, 'docs.read', { path: 'public/faq.md' }));
    assert.notEqual(ok.isError, true, JSON.stringify(ok));
    const d = denied(await call(c, 'docs.read', { path: '/public/../eng/runbook.md' }));
    assert.deepEqual(reasonKeys(d), ['cedar:docs_path_private', 'rego:docs_path_private']);
    const rec = records(gw).filter((r) => r.kind === 'decision' && r.principal?.id === 'docs-reader');
    assert.equal(rec.length, 2);
  });

  test("both engines on the record: each engine's verdict and rule ids, the facts decided on; `policy explain --decision` replays it", async () => {
    const c = await as('recorded');
    const d = denied(await call(c, 'docs.read', { path: '/eng/runbook.md' }));
    const rec = records(gw).find((r) => r.kind === 'decision' && r.decision_id === d.data.decision_id);
    assert.ok(rec, 'the denial has its decision record');
    assert.deepEqual(rec.result.engines, [
      { engine: 'rego', allow: false, reasons: [{ id: 'docs_path_private', message: '/eng is private in the docs service' }] },
      { engine: 'cedar', allow: false, reasons: [{ id: 'docs_path_private', message: '/eng is private in the docs service' }] },
    ]);
    assert.deepEqual(rec.resource, { path: '/eng/runbook.md', root: 'sample' });
    assert.deepEqual(rec.principal.purposes, ['e2e-tests']);
    // An allowed call keeps both engines' grants too.
    const ok = allowed(await call(c, 'docs.read', { path: '/public/faq.md' }));
    assert.notEqual(ok.isError, true);
    const okRec = records(gw)
      .filter((r) => r.kind === 'decision' && r.principal?.id === 'recorded' && r.result.allow)
      .at(-1);
    assert.deepEqual(
      okRec?.result.engines.map(
        (v: { engine: string; allow: boolean; reasons: Array<{ id: string }> }) => `${v.engine}:${v.allow}:${v.reasons.map((r) => r.id).join()}`,
      ),
      ['rego:true:service_call_scope', 'cedar:true:service_call_scope'],
    );

    const audit = path.join(gw.dir, 'audit', 'audit.jsonl');
    const replay = () =>
      runCli(['policy', 'explain', '--decision', d.data.decision_id, '--audit', audit, '--config', path.join(gw.dir, 'gateway.yaml')], {}, 60_000);
    const same = await replay();
    assert.equal(same.code, 0, same.stdout + same.stderr);
    assert.match(same.stdout, /^recorded: deny /m);
    assert.match(same.stdout, /^ {4}rego: deny - docs_path_private$/m);
    assert.match(same.stdout, /^verdict: same/m);
    // Today's policy no longer denies /eng in Rego: the replay says so, and exits 1.
    edit(path.join(policies.rego, 'zz_third_party.rego'), 'startswith(input.resource.path, "/eng")', 'startswith(input.resource.path, "/nowhere")');
    try {
      const differs = await replay();
      assert.equal(differs.code, 1, differs.stdout + differs.stderr);
      assert.match(differs.stdout, /^ {4}rego: allow - service_call_scope$/m);
      assert.match(differs.stdout, /^verdict: different/m);
    } finally {
      edit(path.join(policies.rego, 'zz_third_party.rego'), 'startswith(input.resource.path, "/nowhere")', 'startswith(input.resource.path, "/eng")');
    }
  });

  test('a third-party service: a named fact from a JSON pointer (topic = /text) is decided on by both engines', async () => {
    const c = await as('ticket-agent');
    const ok = allowed(await call(c, 'tickets.echo', { text: 'hello' }));
    assert.notEqual(ok.isError, true, JSON.stringify(ok));
    const d = denied(await call(c, 'tickets.echo', { text: 'secret' }));
    assert.deepEqual(reasonKeys(d), ['cedar:tickets_topic_forbidden', 'rego:tickets_topic_forbidden']);
  });
});

describe('well-formed input only: lone surrogates are refused at the edge with -32602', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ services: { tickets: echoService({ resource: { facts: { topic: '/text' } } }) } });
  });
  after(async () => {
    await gw?.stop();
  });

  /** One raw 2026-07-28 tools/call whose JSON text is given (escapes as the agent sends them). */
  const post = async (sub: string, argsJson: string, metaJson = '{}') => {
    const token = await gw.token({ sub, scopes: ['tickets:call'] });
    const meta = JSON.stringify(modernEnvelope()).slice(0, -1) + (metaJson === '{}' ? '}' : `,${metaJson.slice(1)}`);
    const body = `{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"tickets.echo","arguments":${argsJson},"_meta":${meta}}}`;
    return rawPost(gw, body, {
      authorization: `Bearer ${token}`,
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': 'tools/call',
      'mcp-name': 'tickets.echo',
    });
  };
  const decided = (sub: string) => records(gw).filter((r) => r.kind === 'decision' && r.principal?.id === sub).length;

  for (const [where, args, meta] of [
    ['an argument value', '{"text":"a\\ud800b"}', '{}'],
    ['an argument name', '{"text":"x","\\udc00":1}', '{}'],
    ['a _meta value (the declared purpose)', '{"text":"x"}', '{"micro-mcp/purpose":"\\udfffx"}'],
  ] as const) {
    test(`in ${where}: HTTP 400, JSON-RPC -32602 with the request id, nothing decided or forwarded`, async () => {
      const sub = `surrogate-${where.replace(/[^a-z]+/g, '-')}`;
      const r = await post(sub, args, meta);
      assert.equal(r.status, 400);
      const body = (await r.json()) as { id: unknown; error: { code: number; message: string } };
      assert.equal(body.error.code, -32602);
      assert.equal(body.id, 41);
      assert.match(body.error.message, /well-formed Unicode/);
      // The control on the same gateway: the well-formed call is decided (a decision record appears).
      const ok = await post(`${sub}-control`, '{"text":"fine"}');
      assert.equal(ok.status, 200);
      assert.equal(decided(`${sub}-control`), 1);
      assert.equal(decided(sub), 0, 'the malformed call never reached the policy or the audit');
    });
  }
});

describe("a decision's reach travels to the http service and binds every redirect hop (loopback, test resolver)", () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  let origin: Server;
  let port = 0;
  let landed = 0;
  let client: Client;

  before(async () => {
    // One loopback origin, reached as localhost and as other.test (the service's test resolver maps
    // both to 127.0.0.1; its connect hook refuses anything outside loopback).
    origin = createServer((req, res) => {
      if (req.url === '/hop') res.writeHead(302, { location: `http://other.test:${port}/landed` }).end();
      else if (req.url === '/landed') {
        landed++;
        res.writeHead(200, { 'content-type': 'text/plain' }).end('landed on other.test');
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
    policies = copyPolicies();
    addPurposeHosts(policies, 'e2e-one-host', ['localhost']);
    addPurposeHosts(policies, 'e2e-two-hosts', ['localhost', 'other.test']);
    const http = {
      transport: 'stdio',
      command: 'node',
      args: [
        '--experimental-permission',
        ...codeReadFlags(),
        '--allow-fs-read=${MICRO_MCP_RUN_DIR}',
        path.join(DIST, 'services', 'http', 'main.js'),
        // The service's own allowlist holds both hosts: only the decision's reach tells them apart.
        '--allow-host',
        'localhost',
        '--allow-host',
        'other.test',
        '--allow-http',
        '--allow-port',
        String(port),
        '--test-resolve',
        'localhost=127.0.0.1',
        '--test-resolve',
        'other.test=127.0.0.1',
        '--test-allow-loopback',
      ],
      env: { MICRO_MCP_HTTP_TEST_HOOKS: '1' },
      resource: HTTP_RESOURCE,
      // The OS sandbox with the network (its default has none).
      sandbox: { network: true },
    };
    gw = await startGateway({ services: { http }, policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } } });
    client = await connect(gw, 'modern', {
      token: await gw.token({ sub: 'fetcher', scopes: ['http:fetch'], purpose: '', purposes: ['e2e-one-host', 'e2e-two-hosts'] }),
    });
  });
  after(async () => {
    await client?.close();
    await gw?.stop();
    await new Promise<void>((r) => (origin ? origin.close(() => r()) : r()));
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  test("a redirect from the purpose's host to a host outside the purpose is refused by the service; the target is never reached", async () => {
    const r = allowed(await call(client, 'http.fetchText', { url: `http://localhost:${port}/hop` }, 'e2e-one-host'));
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.equal(toolErrorOf(r)?.code, 'host_not_in_reach');
    assert.equal(landed, 0, 'the redirect target was never requested');
    // The decision record says what the call was allowed on.
    const rec = records(gw)
      .filter((x) => x.kind === 'decision' && x.principal?.id === 'fetcher')
      .at(-1);
    assert.equal(rec?.result.allow, true);
  });

  test('the control: under a purpose that holds both hosts the same redirect is followed', async () => {
    const r = allowed(await call(client, 'http.fetchText', { url: `http://localhost:${port}/hop` }, 'e2e-two-hosts'));
    assert.notEqual(r.isError, true, JSON.stringify(r));
    assert.equal((r.structuredContent as { text: string; redirects: number }).redirects, 1);
    assert.match((r.structuredContent as { text: string }).text, /landed on other\.test/);
    assert.equal(landed, 1);
  });
});
