/**
 * Policy decisions end to end: the real gateway process, the real fs service (sandboxed as in
 * src/config/examples/dev.yaml, serving services/fs/sample) and http service, real Rego (WASM)
 * and Cedar engines, real SDK clients of both eras. Covers allowed and denied calls with their
 * reasons, the filtered tool list, per-service engines, fail closed, hot reload (good and broken
 * edits, broken at start), prebuilt bundles without opa, and `micro-mcp policy test|explain`.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, eventually, rawPost, ROOT, startGateway, type Era, type Gateway, type TokenClaims } from '../helpers/harness.js';
import {
  addPurposeHosts,
  allowed,
  call,
  copyPolicies,
  denied,
  edit,
  firstText,
  fsService,
  httpService,
  reasonKeys,
  runCli,
  startOrigin,
  toolNames,
  type Denial,
  type Reason,
} from '../helpers/policy.js';

const ERAS: Era[] = ['modern', 'legacy'];
const FS_TOOLS = ['fs.list', 'fs.read', 'fs.search', 'fs.stat'];

/** Every non-trivial line of the repo's policy sources: none may reach an agent. */
const POLICY_LINES = (() => {
  const lines = new Set<string>();
  for (const [dir, ext] of [
    [path.join(ROOT, 'policies', 'rego'), '.rego'],
    [path.join(ROOT, 'policies', 'cedar'), '.cedar'],
  ] as const) {
    for (const f of readdirSync(dir).filter((n) => n.endsWith(ext))) {
      for (const raw of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
        const l = raw.trim();
        if (l.length >= 12 && !l.startsWith('#') && !l.startsWith('//')) lines.add(l);
      }
    }
  }
  return [...lines];
})();

/** The denial is the contract's shape and carries ids and messages only, never policy source. */
function assertCleanDenial(d: Denial): void {
  assert.equal(d.code, -32003);
  assert.equal(d.data.code, 'ERR_POLICY_DENIED');
  assert.match(d.data.decision_id, /^[0-9a-f-]{36}$/);
  assert.match(d.data.policy_revision, /^sha256:[0-9a-f]{64}$/);
  assert.ok(d.data.reasons.length > 0, 'a denial names at least one reason');
  for (const r of d.data.reasons) {
    assert.deepEqual(Object.keys(r).sort(), ['engine', 'id', 'message']);
    assert.ok(d.message.includes(r.id), `the error message names ${r.id}: ${d.message}`);
  }
  const shown = `${d.message}\n${JSON.stringify(d.data)}\n${d.data.reasons.map((r) => r.message).join('\n')}`;
  for (const marker of ['package micro_mcp', '_denies', '_grants', 'input.', 'forbid (', 'permit (', 'context.', '@id(', '@reason(']) {
    assert.ok(!shown.includes(marker), `policy source (${marker}) leaked: ${shown}`);
  }
  for (const l of POLICY_LINES) assert.ok(!shown.includes(l), `policy source line leaked: ${l}`);
}

/** The decision records of the audit log (JSON lines), newest last. */
function decisions(gw: Gateway): Array<{ tool: string; principal: { id: string }; result: { allow: boolean; reasons: Reason[] } }> {
  const file = path.join(gw.dir, 'audit', 'audit.jsonl');
  if (!existsSync(file)) return [];
  const out: ReturnType<typeof decisions> = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    try {
      const r = JSON.parse(l) as { kind: string } & ReturnType<typeof decisions>[number];
      if (r.kind === 'decision') out.push(r);
    } catch {
      // An outcome record being appended right now: decision records were complete before forwarding.
    }
  }
  return out;
}

/** The event records of the audit log, oldest first. */
function auditEvents(gw: Gateway): Array<{ type?: string; error?: { code: string }; details?: unknown }> {
  const file = path.join(gw.dir, 'audit', 'audit.jsonl');
  if (!existsSync(file)) return [];
  const out: ReturnType<typeof auditEvents> = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    try {
      const r = JSON.parse(l) as { kind: string } & ReturnType<typeof auditEvents>[number];
      if (r.kind === 'event') out.push(r);
    } catch {
      // a record being appended right now
    }
  }
  return out;
}

describe('policy decisions through the gateway (repo policies + a test-only loopback purpose, rego + cedar)', () => {
  let gw: Gateway;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  let policies: ReturnType<typeof copyPolicies>;

  before(async () => {
    origin = await startOrigin();
    // The shipped policies have no purpose that reaches loopback; the test adds one (both engines).
    policies = copyPolicies();
    addPurposeHosts(policies, 'e2e-loopback', ['localhost']);
    gw = await startGateway({
      services: { fs: fsService(), http: httpService(origin.port) },
      policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } },
    });
  });
  after(async () => {
    await gw?.stop();
    await origin?.close();
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  for (const era of ERAS) {
    describe(`agent era ${era}`, () => {
      const clients: Client[] = [];
      const as = async (c: Partial<TokenClaims>) => {
        const client = await connect(gw, era, { token: await gw.token(c) });
        clients.push(client);
        return client;
      };
      after(async () => {
        for (const c of clients) await c.close();
      });

      test('an engineer reads /eng/...; the audit record shows both engines granting', async () => {
        const sub = `eng-${era}`;
        const client = await as({ sub, groups: ['eng'], scopes: ['fs:read'] });
        const r = allowed(await call(client, 'fs.read', { path: '/eng/runbook.md' }));
        assert.notEqual(r.isError, true, JSON.stringify(r));
        assert.equal(firstText(r), readFileSync(path.join(ROOT, 'services', 'fs', 'sample', 'eng', 'runbook.md'), 'utf8'));
        const rec = decisions(gw)
          .filter((d) => d.principal.id === sub && d.tool === 'fs.read')
          .at(-1);
        assert.ok(rec, 'a decision record was written');
        assert.equal(rec.result.allow, true);
        assert.deepEqual(reasonKeys(rec.result.reasons), ['cedar:fs_read_scope', 'rego:fs_read_scope']);
      });

      test('support cannot read /eng/...: both engines cite fs_path_not_permitted, no policy text', async () => {
        const client = await as({ sub: `support-${era}`, groups: ['support'], scopes: ['fs:read'] });
        // The same principal can read /public: the denial is about the path, not the principal.
        assert.notEqual(allowed(await call(client, 'fs.read', { path: '/public/faq.md' })).isError, true);
        const d = denied(await call(client, 'fs.read', { path: '/eng/runbook.md' }));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['cedar:fs_path_not_permitted', 'rego:fs_path_not_permitted']);
        assert.equal(d.message, 'denied by policy: fs_path_not_permitted');
        const msg = d.data.reasons.find((r) => r.engine === 'rego')!.message;
        assert.equal(msg, "the path is outside the roots readable by the principal's groups");
        // The path the agent asked for is an argument: it is never echoed back.
        assert.ok(!JSON.stringify(d).includes('runbook'), 'arguments never appear in the denial');
      });

      test('a call without the scope is refused with a step-up challenge naming the scope', async () => {
        // A call that only more scope could allow (the policy's step_up_scopes obligation) is answered
        // at the edge with HTTP 403 insufficient_scope, so the client can ask for fs:read (MCP auth spec).
        const client = await as({ sub: `noscope-${era}`, groups: ['eng'], scopes: ['http:fetch'] });
        const e = await call(client, 'fs.read', { path: '/eng/runbook.md' }).then(
          (o) => o,
          (err: Error) => err,
        );
        assert.ok(e instanceof Error, `expected a step-up refusal, got ${JSON.stringify(e)}`);
        assert.equal(e.name, 'InsufficientScopeError');
        assert.match(e.message, /required "fs:read"/);
      });

      test('http: a host not allowed for the purpose is denied and never fetched; the allowed one is fetched', async () => {
        // A purpose bound into the token wins over a declared one: incident-4711 allows only status hosts.
        const incident = await as({ sub: `responder-${era}`, scopes: ['http:fetch'], purpose: 'incident-4711' });
        const hits = origin.hits();
        const d = denied(await call(incident, 'http.fetchText', { url: `http://localhost:${origin.port}/status` }, 'e2e-loopback'));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['cedar:http_host_not_allowed_for_purpose', 'rego:http_host_not_allowed_for_purpose']);
        assert.equal(origin.hits(), hits, 'a denied call never reaches the service');
        // A token that grants e2e-loopback (purposes claim) may declare it on the call, which allows localhost.
        const dev = await as({ sub: `dev-${era}`, scopes: ['http:fetch'], purpose: '', purposes: ['e2e-loopback'] });
        const r = allowed(await call(dev, 'http.fetchText', { url: `http://localhost:${origin.port}/ok` }, 'e2e-loopback'));
        assert.notEqual(r.isError, true, JSON.stringify(r));
        assert.equal((r.structuredContent as { text?: string }).text, 'hello from the origin');
        assert.equal(origin.hits(), hits + 1);
      });

      test('http: a declared purpose the principal is not granted is denied with purpose_not_granted, in both engines', async () => {
        // The purpose would reach localhost, but neither the token nor the group eng grants it.
        const client = await as({ sub: `asserted-${era}`, groups: ['eng'], scopes: ['http:fetch'], purpose: '', purposes: ['incident-4711'] });
        const hits = origin.hits();
        const d = denied(await call(client, 'http.fetchText', { url: `http://localhost:${origin.port}/ok` }, 'e2e-loopback'));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['cedar:purpose_not_granted', 'rego:purpose_not_granted']);
        assert.equal(origin.hits(), hits, 'a denied call never reaches the service');
        // The retired example purpose local-dev is granted to nobody and reaches nothing.
        const dev = denied(await call(client, 'http.fetchText', { url: `http://localhost:${origin.port}/ok` }, 'local-dev'));
        assert.deepEqual(reasonKeys(dev), [
          'cedar:http_host_not_allowed_for_purpose',
          'cedar:purpose_not_granted',
          'rego:http_host_not_allowed_for_purpose',
          'rego:purpose_not_granted',
        ]);
      });

      test('http: an open-world tool without a purpose is denied with purpose_required', async () => {
        const client = await as({ sub: `nopurpose-${era}`, scopes: ['http:fetch'], purpose: '' });
        const d = denied(await call(client, 'http.fetchText', { url: `http://localhost:${origin.port}/x` }));
        assertCleanDenial(d);
        const keys = reasonKeys(d);
        assert.ok(keys.includes('rego:purpose_required') && keys.includes('cedar:purpose_required'), keys.join(' '));
      });

      test('tools/list shows only the tools a principal could be allowed', async () => {
        const fsOnly = await as({ sub: `fsonly-${era}`, groups: ['eng'], scopes: ['fs:read'] });
        assert.deepEqual(await toolNames(fsOnly), FS_TOOLS);
        const both = await as({ sub: `both-${era}`, groups: ['support'], scopes: ['fs:read', 'http:fetch'] });
        assert.deepEqual(await toolNames(both), [...FS_TOOLS, 'http.fetchText']);
        const none = await as({ sub: `none-${era}`, groups: ['eng'], scopes: [] });
        assert.deepEqual(await toolNames(none), []);
        // fs_requires_group: a principal in no group with readable roots never sees fs.
        const outsider = await as({ sub: `sales-${era}`, groups: ['sales'], scopes: ['fs:read', 'http:fetch'] });
        assert.deepEqual(await toolNames(outsider), ['http.fetchText']);
      });
    });
  }

  test('missing scope on the wire: 403, WWW-Authenticate error="insufficient_scope" scope="fs:read", nothing forwarded', async () => {
    const token = await gw.token({ sub: 'noscope-raw', groups: ['eng'], scopes: ['http:fetch'] });
    const meta = {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {},
    };
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'fs.read', arguments: { path: '/eng/runbook.md' }, _meta: meta },
    });
    const r = await rawPost(gw, body, {
      authorization: `Bearer ${token}`,
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': 'tools/call',
      'mcp-name': 'fs.read',
    });
    assert.equal(r.status, 403);
    const challenge = r.headers.get('www-authenticate') ?? '';
    assert.match(challenge, /error="insufficient_scope"/);
    assert.match(challenge, /scope="fs:read"/);
    assert.ok(!(await r.text()).includes('runbook'), 'arguments never appear in the refusal');
    assert.equal(decisions(gw).filter((d) => d.principal.id === 'noscope-raw').length, 0, 'refused before any call decision: nothing forwarded');
  });
});

describe('fail closed and per-service engines (edited copy of the repo policies)', () => {
  let gw: Gateway;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  let policies: ReturnType<typeof copyPolicies>;

  before(async () => {
    origin = await startOrigin();
    policies = copyPolicies();
    addPurposeHosts(policies, 'e2e-loopback', ['localhost']);
    // A Rego rule that errors at evaluation (conflicting values of a complete rule) for fs.search only.
    writeFileSync(
      path.join(policies.rego, 'e2e_boom.rego'),
      'package micro_mcp.authz\n\nreasons := {"boom: conflicting reasons"} if input.tool.local_name == "search"\n',
    );
    // Cedar-only denials: Rego allows both calls.
    writeFileSync(
      path.join(policies.cedar, 'e2e.cedar'),
      [
        '@id("e2e_cedar_only_forbid")',
        '@reason("forbidden by the cedar-only e2e rule")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"fs.stat");',
        '@id("e2e_cedar_http_forbid")',
        '@reason("cedar would forbid every fetch")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText");',
        '',
      ].join('\n'),
    );
    gw = await startGateway({
      services: { fs: fsService(), http: httpService(origin.port) },
      policy: {
        engines: ['rego', 'cedar'],
        rego: { dir: policies.rego },
        cedar: { dir: policies.cedar },
        services: { http: ['rego'] },
      },
    });
  });
  after(async () => {
    await gw?.stop();
    await origin?.close();
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  for (const era of ERAS) {
    test(`${era}: a Rego evaluation error denies (engine_error) and hides the tool from tools/list`, async () => {
      const client = await connect(gw, era, { token: await gw.token({ sub: `boom-${era}`, groups: ['eng'], scopes: ['fs:read'] }) });
      try {
        const d = denied(await call(client, 'fs.search', { path: '/eng', query: 'runbook' }));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['rego:engine_error']);
        // Agents learn that the engine failed, not where in the policy (no file name, no line).
        assert.doesNotMatch(JSON.stringify(d), /\.rego|:\d+:\d+/);
        // The decision record keeps the cause as a stable code, and Cedar's own verdict beside it.
        const rec = decisions(gw).find((x) => (x as { decision_id?: string }).decision_id === d.data.decision_id) as unknown as {
          result: { engines: Array<{ engine: string; allow: boolean; error?: string }> };
        };
        assert.deepEqual(
          rec.result.engines.map((v) => `${v.engine}:${v.allow}:${v.error ?? ''}`),
          ['rego:false:ERR_ENGINE_EVALUATION', 'cedar:true:'],
        );
        // The neighbouring tool decides normally: the error is the rule, not the engine.
        assert.notEqual(allowed(await call(client, 'fs.read', { path: '/eng/runbook.md' })).isError, true);
        assert.deepEqual(await toolNames(client), ['fs.list', 'fs.read', 'fs.stat']);
      } finally {
        await client.close();
      }
    });

    test(`${era}: engines [rego, cedar]: Rego allows, Cedar denies => denied with Cedar's reason only`, async () => {
      const client = await connect(gw, era, { token: await gw.token({ sub: `cedar-${era}`, groups: ['eng'], scopes: ['fs:read'] }) });
      try {
        const d = denied(await call(client, 'fs.stat', { path: '/eng/runbook.md' }));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['cedar:e2e_cedar_only_forbid']);
        assert.equal(d.data.reasons[0]!.message, 'forbidden by the cedar-only e2e rule');
      } finally {
        await client.close();
      }
    });

    test(`${era}: policy.services {http: [rego]}: only Rego decides http, so Cedar's forbid does not apply`, async () => {
      const client = await connect(gw, era, { token: await gw.token({ sub: `svc-${era}`, scopes: ['http:fetch'], purpose: '', purposes: ['e2e-loopback'] }) });
      try {
        const r = allowed(await call(client, 'http.fetchText', { url: `http://localhost:${origin.port}/ok` }, 'e2e-loopback'));
        assert.equal((r.structuredContent as { text?: string }).text, 'hello from the origin');
        const d = denied(await call(client, 'http.fetchText', { url: `http://localhost:${origin.port}/ok` }, 'docs-research'));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['rego:http_host_not_allowed_for_purpose'], 'reasons come from Rego only');
        const rec = decisions(gw)
          .filter((x) => x.principal.id === `svc-${era}` && x.result.allow)
          .at(-1);
        assert.deepEqual(reasonKeys(rec!.result.reasons), ['rego:http_fetch_scope']);
      } finally {
        await client.close();
      }
    });
  }
});

describe('hot reload', () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  let eng: Client;
  let legacy: Client;

  before(async () => {
    policies = copyPolicies();
    gw = await startGateway({
      services: { fs: fsService() },
      policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar }, watch: true },
    });
    const token = await gw.token({ sub: 'reload-eng', groups: ['eng'], scopes: ['fs:read'] });
    eng = await connect(gw, 'modern', { token });
    legacy = await connect(gw, 'legacy', { token });
  });
  after(async () => {
    await eng?.close();
    await legacy?.close();
    await gw?.stop();
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  const readEng = (c: Client) => call(c, 'fs.read', { path: '/eng/runbook.md' });
  const statPublic = (c: Client) => call(c, 'fs.stat', { path: '/public/faq.md' });
  const reloads = () => (gw.output().match(/"msg":"policy set reloaded"/g) ?? []).length;

  test('editing a Rego file flips the next decision (both eras)', async () => {
    const before = allowed(await readEng(eng));
    assert.notEqual(before.isError, true);
    const n = reloads();
    // Engineers lose /eng in Rego only: the call is now denied, and only Rego says why.
    edit(path.join(policies.rego, 'fs.rego'), '"eng": {"/eng", "/public"}', '"eng": {"/public"}');
    await eventually(() => reloads() > n, 15_000);
    for (const c of [eng, legacy]) {
      const d = denied(await readEng(c));
      assertCleanDenial(d);
      assert.deepEqual(reasonKeys(d), ['rego:fs_path_not_permitted']);
    }
    assert.notEqual(allowed(await statPublic(eng)).isError, true, '/public stays readable');
  });

  test('editing a Cedar file flips the next decision', async () => {
    const n = reloads();
    const revBefore = denied(await readEng(eng)).data.policy_revision;
    edit(
      path.join(policies.cedar, 'policies.cedar'),
      '// ---- Grants by scope ----',
      '@id("hot_reload_forbid")\n@reason("added by the hot reload test")\nforbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"fs.stat");\n\n// ---- Grants by scope ----',
    );
    await eventually(() => reloads() > n, 15_000);
    for (const c of [eng, legacy]) {
      const d = denied(await statPublic(c));
      assertCleanDenial(d);
      assert.deepEqual(reasonKeys(d), ['cedar:hot_reload_forbid']);
      assert.notEqual(d.data.policy_revision, revBefore, 'a new policy revision decides');
    }
  });

  test('a reload that changes nothing (a file saved unchanged) is not a new revision and not a reload event', async () => {
    // Runs while the set is good. A file saved unchanged makes the watcher reload; the log says it was unchanged.
    const file = path.join(policies.rego, 'purpose.rego');
    const unchanged = () => (gw.output().match(/"msg":"policy reload: unchanged"/g) ?? []).length;
    const before = unchanged();
    const events = auditEvents(gw).filter((r) => r.type === 'policy_reload').length;
    const rev = denied(await statPublic(eng)).data.policy_revision;
    writeFileSync(file, readFileSync(file, 'utf8'));
    await eventually(() => unchanged() > before, 15_000);
    assert.equal(auditEvents(gw).filter((r) => r.type === 'policy_reload').length, events, 'no policy_reload record');
    assert.equal(denied(await statPublic(eng)).data.policy_revision, rev);
  });

  test('a broken Rego edit keeps the last good set and reports file:line and reason', async () => {
    const rev = denied(await statPublic(eng)).data.policy_revision;
    const okReloads = reloads();
    writeFileSync(path.join(policies.rego, 'zz_broken.rego'), 'package micro_mcp.authz\n\n_x if {\n\tinput.phase ==\n}\n');
    const report = await eventually(() => /policy reload rejected[^\n]*/.exec(gw.output())?.[0] ?? '', 15_000);
    assert.match(report, /zz_broken\.rego:5: rego_parse_error: unexpected } token/);
    assert.equal(reloads(), okReloads, 'no swap happened');
    // The rejection is audited with file, line and reason.
    const rejected = (r: ReturnType<typeof auditEvents>[number]) => r.type === 'policy_reload' && r.error !== undefined;
    await eventually(() => auditEvents(gw).some(rejected), 15_000);
    const events = auditEvents(gw).filter(rejected);
    const problems = (events.at(-1)!.details as { problems: Array<{ engine: string; file: string; line: number; reason: string }> }).problems;
    assert.equal(events.at(-1)!.error!.code, 'ERR_POLICY_COMPILE');
    assert.deepEqual(
      problems.map((p) => [p.engine, path.basename(p.file), p.line, p.reason]),
      [['rego', 'zz_broken.rego', 5, 'rego_parse_error: unexpected } token']],
    );
    // The last good set keeps deciding exactly as before.
    const d = denied(await statPublic(eng));
    assert.deepEqual(reasonKeys(d), ['cedar:hot_reload_forbid']);
    assert.equal(d.data.policy_revision, rev);
    assert.deepEqual(reasonKeys(denied(await readEng(legacy))), ['rego:fs_path_not_permitted']);
    assert.notEqual(allowed(await call(eng, 'fs.read', { path: '/public/faq.md' })).isError, true);
    assert.equal(gw.proc.exitCode, null, 'the gateway keeps running');
  });

  test('a Rego typo in a deny rule (unknown input field) is refused by the type check; the last good set keeps running', async () => {
    const rev = denied(await statPublic(eng)).data.policy_revision;
    const okReloads = reloads();
    const rejected = () => gw.output().match(/policy reload rejected[^\n]*/g) ?? [];
    const before = rejected().length;
    // Without the type check this deny would load and silently never fire.
    writeFileSync(
      path.join(policies.rego, 'zz_broken.rego'),
      'package micro_mcp.authz\n\n_denies contains "typo_deny: x" if {\n\t"eng" in input.principal.grups\n}\n',
    );
    const report = await eventually(
      () =>
        rejected()
          .slice(before)
          .find((l) => l.includes('rego_type_error')) ?? '',
      15_000,
    );
    assert.match(report, /zz_broken\.rego:4: rego_type_error: undefined ref: input\.principal\.grups/);
    assert.equal(reloads(), okReloads, 'no swap happened');
    assert.equal(denied(await statPublic(eng)).data.policy_revision, rev);
    assert.notEqual(allowed(await call(eng, 'fs.read', { path: '/public/faq.md' })).isError, true);
  });
});

describe('a broken policy set at start-up', () => {
  for (const kind of ['rego', 'rego-typo', 'cedar'] as const) {
    test(`${kind}: the gateway refuses to start, naming file, line and reason`, async () => {
      const policies = copyPolicies();
      const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-e2e-broken-'));
      try {
        if (kind === 'rego') writeFileSync(path.join(policies.rego, 'zz_broken.rego'), 'package micro_mcp.authz\n\n_x if {\n\tinput.phase ==\n}\n');
        else if (kind === 'rego-typo')
          writeFileSync(
            path.join(policies.rego, 'zz_broken.rego'),
            'package micro_mcp.authz\n\n_denies contains "typo_deny: x" if {\n\tcount(input.principal.groups - {"x"}) > 0\n}\n',
          );
        else writeFileSync(path.join(policies.cedar, 'zz_broken.cedar'), '@id("broken")\npermit (principal, action, resource)\nwhen { context.nope == };\n');
        const err = await startGateway(
          { services: { fs: fsService() }, policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } } },
          { dir },
        ).then(
          async (gw) => {
            await gw.stop();
            return null;
          },
          (e: Error) => e,
        );
        assert.ok(err, 'the gateway must not start');
        const m = /gateway exited with (\d+)/.exec(err.message);
        assert.ok(m && Number(m[1]) !== 0, err.message);
        if (kind === 'rego') assert.match(err.message, /zz_broken\.rego:5: rego_parse_error: unexpected } token/);
        else if (kind === 'rego-typo') assert.match(err.message, /zz_broken\.rego:4: rego_type_error: minus: invalid argument\(s\)/);
        else assert.match(err.message, /zz_broken\.cedar:3: .*unexpected token/);
        assert.doesNotMatch(err.message, /listening on/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        rmSync(policies.dir, { recursive: true, force: true });
      }
    });
  }
});

describe('a prebuilt Rego bundle, no opa CLI', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'micro-mcp-e2e-bundle-'));
  const bundle = path.join(work, 'out', 'policy.tar.gz');
  const noOpa = { MICRO_MCP_OPA: path.join(work, 'no-such-opa') };
  let gw: Gateway;
  let revision: string;

  before(async () => {
    const b = await runCli(['policy', 'build', '--out', bundle]);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    revision = /\(revision (sha256:[0-9a-f]{64})\)/.exec(b.stdout)?.[1] ?? '';
    assert.ok(revision, b.stdout);
    gw = await startGateway({ services: { fs: fsService() }, policy: { rego: { bundle } } }, { env: noOpa });
  });
  after(async () => {
    await gw?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('without the bundle, the same environment cannot compile Rego sources (the control)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-e2e-noopa-'));
    try {
      const err = await startGateway({ services: { fs: fsService() } }, { env: noOpa, dir }).then(
        async (g) => {
          await g.stop();
          return null;
        },
        (e: Error) => e,
      );
      assert.ok(err, 'rego sources need opa');
      assert.match(err.message, /the opa CLI was not found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const era of ERAS) {
    test(`${era}: decides as the sources do: allow, deny with both engines' reasons, filtered list`, async () => {
      const support = await connect(gw, era, { token: await gw.token({ sub: `bundle-support-${era}`, groups: ['support'], scopes: ['fs:read'] }) });
      const engc = await connect(gw, era, { token: await gw.token({ sub: `bundle-eng-${era}`, groups: ['eng'], scopes: ['fs:read'] }) });
      try {
        const d = denied(await call(support, 'fs.read', { path: '/eng/runbook.md' }));
        assertCleanDenial(d);
        assert.deepEqual(reasonKeys(d), ['cedar:fs_path_not_permitted', 'rego:fs_path_not_permitted']);
        assert.notEqual(allowed(await call(engc, 'fs.read', { path: '/eng/runbook.md' })).isError, true);
        assert.deepEqual(await toolNames(support), FS_TOOLS);
      } finally {
        await support.close();
        await engc.close();
      }
    });
  }

  test('the gateway decides with the revision `policy build` printed, and `policy check` verifies the bundle without opa', async () => {
    const c = await runCli(['policy', 'check', '--bundle', bundle], noOpa);
    assert.equal(c.code, 0, c.stdout + c.stderr);
    assert.ok(c.stdout.includes(`ok   rego  bundle ${bundle} (revision ${revision})`), c.stdout);
    const cedarRev = /^ok +cedar .* \(revision (sha256:[0-9a-f]{64})\)$/m.exec(c.stdout)?.[1];
    assert.ok(cedarRev, c.stdout);
    // The set's revision is the hash over its engines' revisions (src/policy/policy-set.ts).
    const expected = `sha256:${createHash('sha256').update(`cedar=${cedarRev}\nrego=${revision}\n`).digest('hex')}`;
    const client = await connect(gw, 'modern', { token: await gw.token({ sub: 'bundle-rev', groups: ['support'], scopes: ['fs:read'] }) });
    try {
      assert.equal(denied(await call(client, 'fs.read', { path: '/eng/runbook.md' })).data.policy_revision, expected);
    } finally {
      await client.close();
    }
    // The bundle's revision is the sources' revision: the same policies, prebuilt.
    const src = await runCli(['policy', 'check']);
    assert.match(src.stdout, new RegExp(`^ok +rego .*\\(revision ${revision}\\)$`, 'm'));
  });
});

describe('micro-mcp policy test | explain', () => {
  test('`policy test` runs both suites and ends with "N passed, 0 failed"', async () => {
    const r = await runCli(['policy', 'test'], {}, 60_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const last = r.stdout.trim().split('\n').at(-1) ?? '';
    const m = /^(\d+) passed, 0 failed$/.exec(last);
    assert.ok(m, last);
    assert.ok(Number(m[1]) >= 20, `suites ran (${m[1]})`);
    assert.match(r.stdout, /^ok +rego /m);
    assert.match(r.stdout, /^ok +cedar /m);
  });

  test('`policy explain` honours --rego/--cedar, --principal-type, --method and --annotations; prints obligations and an engine error; refuses an unknown --phase', async () => {
    const bad = await runCli(['policy', 'explain', '--principal', 'bob', '--tool', 'fs.read', '--phase', 'sideways']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--phase must be call or list, not "sideways"/);
    const badType = await runCli(['policy', 'explain', '--principal', 'bob', '--tool', 'fs.read', '--principal-type', 'robot']);
    assert.equal(badType.code, 2);
    assert.match(badType.stderr, /--principal-type must be one of user, agent, service/);

    const policies = copyPolicies();
    try {
      writeFileSync(
        path.join(policies.rego, 'e2e_boom.rego'),
        'package micro_mcp.authz\n\nreasons := {"boom: conflicting reasons"} if input.principal.type == "service"\n',
      );
      writeFileSync(
        path.join(policies.cedar, 'e2e.cedar'),
        '@id("e2e_no_agents")\n@reason("agents may not get prompts")\nforbid (principal, action == MicroMcp::Action::"get_prompt", resource) when { principal.type == "agent" };\n',
      );
      const args = (type: string) => [
        'policy',
        'explain',
        '--rego',
        policies.rego,
        '--cedar',
        policies.cedar,
        '--principal',
        'ci-bot',
        '--principal-type',
        type,
        '--scopes',
        'everything:call',
        '--tool',
        'everything.simple-prompt',
        '--method',
        'prompts/get',
        '--annotations',
        '{"readOnlyHint":true,"openWorldHint":false}',
      ];
      const agent = await runCli(args('agent'));
      assert.equal(agent.code, 0, agent.stdout + agent.stderr);
      assert.match(agent.stdout, /"method":"prompts\/get","action":"get_prompt","principal":"ci-bot","type":"agent"/);
      assert.match(agent.stdout, /^rego: allow\n {4}- service_content_scope: /m);
      assert.match(agent.stdout, /^cedar: deny\n {4}- e2e_no_agents: agents may not get prompts$/m);
      const service = await runCli(args('service'));
      assert.match(service.stdout, /^rego: deny\n {4}- engine_error: rego evaluation failed\n {4}error: ERR_ENGINE_EVALUATION$/m);
      assert.match(service.stdout, /^cedar: allow$/m);
    } finally {
      rmSync(policies.dir, { recursive: true, force: true });
    }

    const reach = await runCli([
      'policy',
      'explain',
      '--principal',
      'alice',
      '--groups',
      'eng',
      '--scopes',
      'fs:read',
      '--tool',
      'fs.read',
      '--annotations',
      '{"readOnlyHint":true,"openWorldHint":false}',
      '--args',
      '{"path":"/eng/runbook.md"}',
    ]);
    const obligations = /^obligations: (.*)$/m.exec(reach.stdout)?.[1] ?? '{}';
    assert.deepEqual((JSON.parse(obligations) as { reach: { roots: string[] } }).reach.roots.sort(), ['/eng', '/public']);
  });

  test("`policy explain` prints both engines' decisions with reasons", async () => {
    const r = await runCli([
      'policy',
      'explain',
      '--principal',
      'bob',
      '--groups',
      'support',
      '--scopes',
      'fs:read',
      '--tool',
      'fs.read',
      '--args',
      '{"path":"/eng/runbook.md"}',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^rego: deny\n {4}- fs_path_not_permitted: /m);
    assert.match(r.stdout, /^cedar: deny\n {4}- fs_path_not_permitted: /m);
    assert.match(r.stdout, /^decision: deny \(engines: rego, cedar; revision sha256:[0-9a-f]{64}\)$/m);
    const ok = await runCli([
      'policy',
      'explain',
      '--principal',
      'alice',
      '--groups',
      'eng',
      '--scopes',
      'fs:read',
      '--tool',
      'fs.read',
      '--annotations',
      '{"readOnlyHint":true,"openWorldHint":false}',
      '--args',
      '{"path":"/eng/runbook.md"}',
    ]);
    assert.match(ok.stdout, /^rego: allow\n {4}- fs_read_scope: /m);
    assert.match(ok.stdout, /^cedar: allow\n {4}- fs_read_scope: /m);
    assert.match(ok.stdout, /^decision: allow /m);
  });
});
