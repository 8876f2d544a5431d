/**
 * Issue #11 point 5, names: a service exposed unprefixed or under another prefix, single tools and
 * prompts aliased (services.<name>.expose), called by real SDK clients (1.x and 2.x) over real HTTP;
 * the policy decides on the canonical <service>.<tool> and the audit records both names; every clash
 * (tool, prompt, resource URI) stops start-up with ERR_CONFIG_INVALID naming both services.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client as Client1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as Transport1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InsufficientScopeError } from '@modelcontextprotocol/client';
import { readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, type Gateway, startGateway } from '../helpers/harness.js';

const text = (r: unknown) => (r as { content: Array<{ text: string }> }).content[0]!.text;

/** The 1.x SDK client (the one most agents use), over Streamable HTTP with a bearer token. */
async function connect1(gw: Gateway, token: string): Promise<Client1> {
  const client = new Client1({ name: 'e2e-sdk1', version: '1.0.0' });
  await client.connect(new Transport1(new URL(gw.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return client;
}

/** The gateway's start-up failure output for a config (it must not start). */
async function startFailure(services: Record<string, unknown>): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-e2e-names-'));
  try {
    const err = await startGateway({ services }, { dir }).then(
      async (g) => {
        await g.stop();
        return null;
      },
      (e: Error) => e,
    );
    assert.ok(err, 'the gateway must not start');
    assert.doesNotMatch(err.message, /listening on/);
    return err.message;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('exposed names', () => {
  let gw: Gateway;
  let auditDir: string;
  before(async () => {
    gw = await startGateway({
      services: {
        // Unprefixed, with one tool and one prompt aliased.
        echo: echoService({ expose: { prefix: '', aliases: { echo: 'say', ehco: 'typo' }, prompt_aliases: { greet: 'hello' } } }),
        // Under another service's prefix: its tools look like fs tools, the policy still sees "mirror".
        mirror: echoService({ expose: { prefix: 'fs' } }, undefined, 'echo://mirror/info'),
      },
    });
    auditDir = path.join(gw.dir, 'audit');
  });
  after(async () => {
    await gw?.stop();
  });

  test('SDK 2.x client (both eras) and 1.x client list and call the exposed names', async () => {
    const token = await gw.token({ scopes: ['echo:call', 'mirror:call'] });
    const modern = await connect(gw, 'modern', { token });
    const legacy = await connect(gw, 'legacy', { token });
    const sdk1 = await connect1(gw, token);
    try {
      for (const c of [modern, legacy, sdk1]) {
        const names = (await c.listTools()).tools.map((t) => t.name);
        for (const n of ['say', 'progress', 'slow', 'fs.echo', 'fs.progress']) assert.ok(names.includes(n), `${n} in ${names.join(',')}`);
        for (const n of ['echo', 'echo.echo', 'mirror.echo', 'echo.progress']) assert.ok(!names.includes(n), `${n} must not be listed`);
        assert.equal(text(await c.callTool({ name: 'say', arguments: { text: 'hi' } })), 'hi');
        assert.equal(text(await c.callTool({ name: 'fs.echo', arguments: { text: 'mirrored' } })), 'mirrored');
        const prompts = (await c.listPrompts()).prompts.map((p) => p.name).sort();
        assert.deepEqual(prompts, ['ask', 'fs.ask', 'fs.greet', 'hello']);
        const got = await c.getPrompt({ name: 'hello', arguments: { who: 'bob' } });
        assert.deepEqual(got.messages, [{ role: 'user', content: { type: 'text', text: 'Hello bob' } }]);
        const uris = (await c.listResources()).resources.map((r) => r.uri).sort();
        assert.deepEqual(uris, ['echo://mirror/info', 'echo://static/info']);
        const read = await c.readResource({ uri: 'echo://mirror/info' });
        assert.deepEqual(read.contents, [{ uri: 'echo://mirror/info', mimeType: 'text/plain', text: 'resource echo://mirror/info' }]);
      }
      // The canonical names are not reachable under another name: one name per entry.
      await assert.rejects(modern.callTool({ name: 'echo.echo', arguments: { text: 'x' } }), /Unknown tool: echo\.echo/);
      await assert.rejects(sdk1.callTool({ name: 'mirror.echo', arguments: { text: 'x' } }), /Unknown tool: mirror\.echo/);
      await assert.rejects(modern.getPrompt({ name: 'echo.greet', arguments: { who: 'x' } }), /Unknown prompt: echo\.greet/);
    } finally {
      await Promise.all([modern.close(), legacy.close(), sdk1.close()]);
    }
  });

  test('the policy decides on the canonical name; the audit records both', async () => {
    // fs:read grants the fs service's tools, but "fs.echo" is the mirror service's: it needs mirror:call.
    const token = await gw.token({ sub: 'carol', scopes: ['fs:read', 'echo:call'] });
    const client = await connect(gw, 'modern', { token });
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('say'));
      assert.ok(!names.some((n) => n.startsWith('fs.')), `no mirror tool is visible: ${names.join(',')}`);
      // Hidden only for want of the mirror service's scope: the step-up answer names mirror:call, not fs:*.
      await assert.rejects(client.callTool({ name: 'fs.echo', arguments: { text: 'borrowed' } }), (e: unknown) => {
        assert.ok(e instanceof InsufficientScopeError, String(e));
        assert.equal(e.requiredScope, 'mirror:call');
        return true;
      });
      assert.equal(text(await client.callTool({ name: 'say', arguments: { text: 'allowed' } })), 'allowed');
      const got = await client.getPrompt({ name: 'hello', arguments: { who: 'carol' } });
      assert.equal(got.messages.length, 1);
    } finally {
      await client.close();
    }
    const decisions = readRecords(auditDir)
      .map((l) => l.rec)
      .filter((r) => r.kind === 'decision' && (r.principal as { id: string }).id === 'carol');
    const [stepUp] = readRecords(auditDir)
      .map((l) => l.rec as Record<string, unknown>)
      .filter((r) => r.kind === 'event' && (r.principal as { id: string } | null)?.id === 'carol');
    assert.deepEqual([stepUp?.type, stepUp?.tool, stepUp?.exposed_name, stepUp?.service], ['auth_failure', 'mirror.echo', 'fs.echo', 'mirror']);
    const pick = (r: Record<string, unknown>) => ({
      method: r.method,
      tool: r.tool,
      service: r.service,
      exposed_name: r.exposed_name,
      allow: (r.result as { allow: boolean }).allow,
    });
    assert.deepEqual(decisions.map(pick), [
      { method: 'tools/call', tool: 'echo.echo', service: 'echo', exposed_name: 'say', allow: true },
      { method: 'prompts/get', tool: 'echo.greet', service: 'echo', exposed_name: 'hello', allow: true },
    ]);
  });

  test('a prompt the policy denies is decided and recorded under the canonical name', async () => {
    // prompts/get has no step-up: it is decided, and "fs.greet" is the mirror service's prompt.
    const token = await gw.token({ sub: 'erin', scopes: ['fs:read'] });
    const client = await connect(gw, 'legacy', { token });
    try {
      const denied = await client.getPrompt({ name: 'fs.greet', arguments: { who: 'x' } }).then(
        () => null,
        (e: { code: number; data: { code: string; reasons: Array<{ id: string }> } }) => e,
      );
      assert.ok(denied, 'fs.greet must be denied');
      assert.equal(denied.code, -32003);
      assert.equal(denied.data.code, 'ERR_POLICY_DENIED');
      assert.deepEqual([...new Set(denied.data.reasons.map((r) => r.id))], ['service_content_scope_missing']);
    } finally {
      await client.close();
    }
    const decisions = readRecords(auditDir)
      .map((l) => l.rec as Record<string, unknown>)
      .filter((r) => r.kind === 'decision' && (r.principal as { id: string }).id === 'erin');
    assert.deepEqual(
      decisions.map((r) => [r.method, r.tool, r.service, r.exposed_name, (r.result as { allow: boolean }).allow]),
      [['prompts/get', 'mirror.greet', 'mirror', 'fs.greet', false]],
    );
  });

  test('an alias of a tool the service does not list is logged at start-up', () => {
    assert.match(gw.output(), /services\.echo\.expose\.aliases names a tool the service does not list: ehco/);
    assert.doesNotMatch(gw.output(), /expose\.aliases names a tool the service does not list: echo\b/);
  });

  test('a refused call through an exposed name is recorded with the service that owns it, never one read off the name', async () => {
    const client = await connect1(gw, await gw.token({ sub: 'frank', scopes: ['mirror:call'] }));
    try {
      // The mirror service (exposed as fs.*) changes its weather tool: quarantined, then called by its exposed name.
      assert.equal(text(await client.callTool({ name: 'fs.redescribe', arguments: {} })), 'weather redescribed');
      await eventually(async () => !(await client.listTools()).tools.some((t) => t.name === 'fs.weather'));
      await assert.rejects(client.callTool({ name: 'fs.weather', arguments: { city: 'Oslo' } }), (e: { code?: number; data?: unknown }) => {
        assert.equal(e.code, -32003);
        assert.deepEqual(e.data, { code: 'ERR_TOOL_DEFINITION_CHANGED', reason: 'tool_definition_changed', tool: 'fs.weather' });
        return true;
      });
      // A name under the exposed prefix that no service lists: there is no service "fs" to name.
      await assert.rejects(client.callTool({ name: 'fs.nothing', arguments: {} }), (e: { code?: number; message?: string }) => {
        assert.deepEqual([e.code, e.message], [-32602, 'MCP error -32602: Unknown tool: fs.nothing']);
        return true;
      });
    } finally {
      await client.close();
    }
    const refused = () =>
      readRecords(auditDir)
        .map((l) => l.rec as Record<string, unknown>)
        .filter((r) => r.kind === 'event' && (r.principal as { id: string } | null)?.id === 'frank');
    await eventually(() => refused().length >= 2);
    const events = refused();
    assert.deepEqual(
      events.map((r) => [r.type, r.tool, r.exposed_name, r.service, (r.error as { code: string }).code]),
      [
        ['probe_refused', 'mirror.weather', 'fs.weather', 'mirror', 'ERR_TOOL_DEFINITION_CHANGED'],
        ['probe_refused', 'fs.nothing', undefined, undefined, 'ERR_TOOL_NOT_FOUND'],
      ],
    );
  });

  test('a name that is canonical is recorded without exposed_name', async () => {
    const gw2 = await startGateway({ services: { echo: echoService() } });
    try {
      const client = await connect(gw2, 'modern', { token: await gw2.token({ sub: 'dave', scopes: ['echo:call'] }) });
      assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: 'plain' } })), 'plain');
      await client.close();
      const [rec] = readRecords(path.join(gw2.dir, 'audit'))
        .map((l) => l.rec)
        .filter((r) => r.kind === 'decision');
      assert.equal(rec?.tool, 'echo.echo');
      assert.equal('exposed_name' in (rec ?? {}), false);
    } finally {
      await gw2.stop();
    }
  });
});

describe('name clashes stop start-up', () => {
  test('two services exposing the same tool name', async () => {
    const out = await startFailure({
      echo: echoService(),
      other: echoService({ expose: { prefix: 'echo' } }, undefined, 'echo://other/info'),
    });
    assert.match(
      out,
      /ERR_CONFIG_INVALID: tool name "echo\.echo" is exposed by both service "echo" \(echo\.echo\) and service "other" \(other\.echo\); set services\.<name>\.expose\.prefix or expose\.aliases to tell them apart/,
    );
  });

  test('an alias that takes another service tool name', async () => {
    const out = await startFailure({
      echo: echoService({ expose: { prefix: '' } }),
      other: echoService({ expose: { aliases: { echo: 'slow' } } }, undefined, 'echo://other/info'),
    });
    assert.match(out, /ERR_CONFIG_INVALID: tool name "slow" is exposed by both service "echo" \(echo\.slow\) and service "other" \(other\.echo\)/);
  });

  test('two prompts under one name', async () => {
    const out = await startFailure({
      echo: echoService(),
      other: echoService({ expose: { aliases: {}, prompt_aliases: { greet: 'echo.greet' } } }, undefined, 'echo://other/info'),
    });
    assert.match(
      out,
      /ERR_CONFIG_INVALID: prompt name "echo\.greet" is exposed by both service "echo" \(echo\.greet\) and service "other" \(other\.greet\); set services\.<name>\.expose\.prefix or expose\.prompt_aliases to tell them apart/,
    );
  });

  test('two services listing the same resource URI', async () => {
    // Both name the same URI (the harness gives a second echo service its own unless one is named).
    const out = await startFailure({ echo: echoService(), other: echoService({}, undefined, 'echo://static/info') });
    assert.match(
      out,
      /ERR_CONFIG_INVALID: resource "echo:\/\/static\/info" is listed by both service "echo" and service "other"; a URI cannot be renamed, so one of the services must stop listing it/,
    );
  });

  test('a clash that appears after start-up withholds the newcomer and is audited', async () => {
    const gw = await startGateway({
      services: {
        // "later" exposes its echo tool as "extra" from the start; "first" lists its own "extra" only after toggle.
        first: echoService({ expose: { prefix: '' } }),
        later: echoService({ expose: { aliases: { echo: 'extra' } } }, undefined, 'echo://later/info'),
      },
    });
    try {
      const client = await connect(gw, 'modern', { token: await gw.token({ scopes: ['first:call', 'later:call'] }) });
      assert.equal(text(await client.callTool({ name: 'toggle', arguments: {} })), 'extra on');
      const event = await eventually(() =>
        readRecords(path.join(gw.dir, 'audit'))
          .map((l) => l.rec as Record<string, unknown>)
          .find((r) => r.kind === 'event' && r.type === 'name_clash'),
      );
      assert.deepEqual(event?.details, { kind: 'tool', name: 'extra', service: 'first', canonical: 'first.extra', holder: 'later' });
      // The holder keeps the name: "extra" still reaches later's echo tool (first's would answer "extra").
      assert.equal(text(await client.callTool({ name: 'extra', arguments: { text: 'still later' } })), 'still later');
      await client.close();
    } finally {
      await gw.stop();
    }
  });

  test('an exposed name the schema refuses', async () => {
    const out = await startFailure({ echo: echoService({ expose: { aliases: { echo: 'has space' } } }) });
    assert.match(out, /ERR_CONFIG_INVALID/);
    assert.match(out, /services\.echo\.expose\.aliases\.echo|services\/echo\/expose\/aliases\/echo/);
  });
});
