/**
 * Policy you can trust (issue #10), end to end: a real gateway process, real services as child
 * processes, real Rego (WASM) and Cedar engines, real SDK clients. Resource facts come from each
 * service's declaration, whatever the service is called: a files service configured as `docs` and a
 * third-party service whose named facts come from JSON pointers get policies in both languages.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, echoService, type Gateway, startGateway } from '../helpers/harness.js';
import { allowed, call, copyPolicies, denied, edit, FS_SAMPLE, fsService, reasonKeys } from '../helpers/policy.js';

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

  test('a third-party service: a named fact from a JSON pointer (topic = /text) is decided on by both engines', async () => {
    const c = await as('ticket-agent');
    const ok = allowed(await call(c, 'tickets.echo', { text: 'hello' }));
    assert.notEqual(ok.isError, true, JSON.stringify(ok));
    const d = denied(await call(c, 'tickets.echo', { text: 'secret' }));
    assert.deepEqual(reasonKeys(d), ['cedar:tickets_topic_forbidden', 'rego:tickets_topic_forbidden']);
  });
});
