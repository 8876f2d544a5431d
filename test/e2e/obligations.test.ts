/**
 * Obligations (issue #14), end to end: a real gateway process, the echo fixture as a real child
 * process, real Rego (WASM) and Cedar engines, real SDK clients of both eras. Both engines state
 * obligations (Rego's object, Cedar's annotations); the gateway merges them, acts on them before
 * the agent sees the result, records categories and counts (never values) and denies an obligation
 * it does not know.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { auditText, readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, type Era, type Gateway, ROOT, startGateway } from '../helpers/harness.js';
import { allowed, call, copyPolicies, denied, firstText, reasonKeys } from '../helpers/policy.js';

interface Planted {
  id: string;
  category: string;
  planted: string;
  value: unknown;
}

const CORPUS = (JSON.parse(readFileSync(path.join(ROOT, 'test', 'corpora', 'secrets-pii.json'), 'utf8')) as { cases: Planted[] }).cases;

/** The echo service's tools under obligations, written in both languages. */
function writeObligationPolicies(p: { rego: string; cedar: string }): void {
  writeFileSync(
    path.join(p.rego, 'zz_obligations.rego'),
    [
      'package micro_mcp.authz',
      '',
      '_redact contains category if {',
      '\t_granted("service_call_scope")',
      '\tinput.tool.name in {"echo.echo", "echo.fail"}',
      '\tsome category in {"email", "phone", "card", "secrets"}',
      '}',
      '',
      '_max_bytes contains 4096 if {',
      '\t_granted("service_call_scope")',
      '\tinput.tool.name == "echo.big"',
      '}',
      '',
      'obligations["notarize"] := true if {',
      '\tallow',
      '\tinput.tool.name == "echo.env"',
      '}',
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(p.cedar, 'zz_obligations.cedar'),
    [
      '@id("echo_redaction")',
      '@redact("email,phone,card,secrets")',
      'permit (principal, action == MicroMcp::Action::"call_tool", resource)',
      'when { resource in [MicroMcp::Tool::"echo.echo", MicroMcp::Tool::"echo.fail"] && context.scopes.contains("echo:call") };',
      '',
      '@id("echo_size")',
      '@max_bytes("2048")',
      'permit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"echo.big")',
      'when { context.scopes.contains("echo:call") };',
      '',
    ].join('\n'),
  );
}

describe('obligations from both engines, acted on before the agent sees the result', () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  const clients: Client[] = [];
  const records = () => readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec as Record<string, any>);
  /** The first record that matches, once it is written. */
  const found = async (pred: (r: Record<string, any>) => boolean): Promise<Record<string, any>> =>
    (await eventually(() => records().find(pred))) as Record<string, any>;

  before(async () => {
    policies = copyPolicies();
    writeObligationPolicies(policies);
    gw = await startGateway({
      services: { echo: echoService() },
      policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } },
    });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });

  const client = async (era: Era, token?: string): Promise<Client> => {
    const c = await connect(gw, era, token !== undefined ? { token } : {});
    clients.push(c);
    return c;
  };

  for (const era of ['modern', 'legacy'] as const) {
    test(`${era}: every planted secret and PII value of the corpus is removed from the result; the audit counts them and holds no value`, async () => {
      const token = await gw.token({ sub: `redact-${era}` });
      const c = await client(era, token);
      // Every string case of the corpus in one text, and the caller's own token three ways.
      const strings = CORPUS.filter((k) => typeof k.value === 'string').map((k) => k.value as string);
      const half = Math.floor(token.length / 2);
      const text = [
        ...strings,
        `mine: ${Buffer.from(token).toString('base64')}`,
        `url ${encodeURIComponent(token)}`,
        token.slice(0, half),
        token.slice(half),
      ].join('\n');
      const r = allowed(await call(c, 'echo.echo', { text }));
      const out = firstText(r);
      for (const k of CORPUS.filter((x) => typeof x.value === 'string')) assert.equal(out.includes(k.planted), false, `${k.id} survived`);
      for (let i = 0; i + 16 <= token.length; i += 8) assert.equal(out.includes(token.slice(i, i + 16)), false, 'a piece of the caller token survived');
      assert.equal(out.includes(Buffer.from(token).toString('base64').slice(8, 40)), false);
      assert.match(out, /^Contact \[REDACTED\] for access\.$/m);

      const decision = await found((x) => x.kind === 'decision' && x.principal?.id === `redact-${era}`);
      assert.deepEqual(decision.result.obligations, { redact: ['card', 'email', 'phone', 'secrets'] });
      const outcome = await found((x) => x.kind === 'outcome' && x.decision_id === decision.decision_id);
      assert.equal(outcome.outcome, 'ok');
      assert.deepEqual(Object.keys(outcome.redacted).sort(), ['card', 'email', 'phone', 'secrets']);
      assert.equal(outcome.redacted.email, strings.filter((s) => s.includes('@') && !s.includes('://')).length);
      assert.equal(outcome.redacted.card, 3);
      assert.equal(outcome.redacted.phone, 3);
      const audit = auditText(path.join(gw.dir, 'audit'));
      for (const k of CORPUS) assert.equal(audit.includes(k.planted), false, `${k.id} in the audit`);
    });
  }

  test("a service's error message and data are filtered like its result", async () => {
    const c = await client('legacy');
    await assert.rejects(
      c.callTool({ name: 'echo.fail', arguments: { text: 'no access for jane.doe@example.org with AKIAIOSFODNN7EXAMPLE' } }),
      (e: { code?: number; message?: string; data?: unknown }) => {
        assert.equal(e.code, -32000);
        assert.equal(e.message, 'no access for [REDACTED] with [REDACTED]');
        assert.deepEqual(e.data, { echoed: 'no access for [REDACTED] with [REDACTED]' });
        return true;
      },
    );
  });

  test("max_bytes: the smaller of the two engines' limits (Cedar 2048, Rego 4096) refuses a larger result; a smaller one passes", async () => {
    const c = await client('modern');
    const small = allowed(await call(c, 'echo.big', { bytes: 1000 }));
    assert.equal(firstText(small).length, 1000);
    await assert.rejects(
      c.callTool({ name: 'echo.big', arguments: { bytes: 3000 } }),
      (e: { code?: number; message?: string; data?: { code?: string; max_bytes?: number } }) => {
        assert.equal(e.code, -32004);
        assert.equal(e.data?.code, 'ERR_RESULT_TOO_LARGE');
        assert.equal(e.data?.max_bytes, 2048);
        assert.match(e.message ?? '', /the result is larger than this call's policy allows \(2048 bytes\)/);
        return true;
      },
    );
    const refused = await found((x) => x.kind === 'outcome' && x.outcome === 'refused' && x.error?.code === 'ERR_RESULT_TOO_LARGE');
    assert.ok(refused.response_bytes > 2048);
  });

  test('an obligation the gateway does not know denies the call (both engines allowed it), and the record says why', async () => {
    const c = await client('legacy');
    const d = denied(await call(c, 'echo.env', {}));
    assert.deepEqual(reasonKeys(d), ['gateway:unknown_obligation']);
    assert.equal(d.data.reasons[0]?.message, 'rego: the policy requires an obligation this gateway does not know: "notarize"');
    const rec = await found((x) => x.kind === 'decision' && x.decision_id === d.data.decision_id);
    assert.equal(rec.result.allow, false);
    assert.deepEqual(
      rec.result.engines.map((v: { engine: string; allow: boolean }) => `${v.engine}:${v.allow}`),
      ['rego:true', 'cedar:true', 'gateway:false'],
    );
    // Nothing was forwarded: a denied call has no outcome.
    assert.equal(
      records().some((x) => x.kind === 'outcome' && x.decision_id === d.data.decision_id),
      false,
    );
  });
});

describe("data categories: labels from services and policies, facts of the session's later calls", () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  const clients: Client[] = [];
  const records = () => readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec as Record<string, any>);

  before(async () => {
    policies = copyPolicies();
    // The policies label echo.weather's result pii, and deny it in a session that has seen a secret.
    writeFileSync(
      path.join(policies.rego, 'zz_labels.rego'),
      [
        'package micro_mcp.authz',
        '',
        '_labels contains "pii" if {',
        '\t_granted("service_call_scope")',
        '\tinput.tool.name == "echo.weather"',
        '}',
        '',
        '_denies contains "echo_after_secret: this session has received secret data" if {',
        '\tinput.action == "call_tool"',
        '\tinput.tool.name == "echo.weather"',
        '\t"secret" in object.get(input.context, "data_labels", [])',
        '}',
        '',
      ].join('\n'),
    );
    writeFileSync(
      path.join(policies.cedar, 'zz_labels.cedar'),
      [
        '@id("echo_weather_pii")',
        '@labels("pii")',
        'permit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"echo.weather")',
        'when { context.scopes.contains("echo:call") };',
        '',
        '@id("echo_after_secret")',
        '@reason("this session has received secret data")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"echo.weather")',
        'when { context has data_labels && context.data_labels.contains("secret") };',
        '',
      ].join('\n'),
    );
    gw = await startGateway({ services: { echo: echoService() }, policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } } });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });

  test("2025 session: a service-labelled secret is audited and denies the session's later call; another session and a 2026-07-28 agent are unaffected", async () => {
    const token = await gw.token({ sub: 'lab' });
    const [session, other, modern] = [await connect(gw, 'legacy', { token }), await connect(gw, 'legacy', { token }), await connect(gw, 'modern', { token })];
    clients.push(session, other, modern);

    assert.equal(firstText(allowed(await call(session, 'echo.weather', { city: 'Oslo' }))), 'sunny in Oslo');
    const pii = await eventually(() => records().find((r) => r.kind === 'outcome' && r.tool === 'echo.weather'));
    assert.deepEqual(pii?.data_labels, ['pii']);

    assert.equal(firstText(allowed(await call(session, 'echo.classified', {}))), 'the launch code');
    const secret = await eventually(() => records().find((r) => r.kind === 'outcome' && r.tool === 'echo.classified'));
    // Only well-formed labels count ("Not A Label" is dropped).
    assert.deepEqual(secret?.data_labels, ['secret']);

    const d = denied(await call(session, 'echo.weather', { city: 'Oslo' }));
    assert.deepEqual(reasonKeys(d), ['cedar:echo_after_secret', 'rego:echo_after_secret']);
    const decided = await eventually(() => records().find((r) => r.kind === 'decision' && r.decision_id === d.data.decision_id));
    assert.equal(decided?.result.allow, false);

    // Labels belong to the session that received them.
    assert.equal(firstText(allowed(await call(other, 'echo.weather', { city: 'Rome' }))), 'sunny in Rome');
    // 2026-07-28 requests are stateless: there is no session to carry labels.
    assert.equal(firstText(allowed(await call(modern, 'echo.classified', {}))), 'the launch code');
    assert.equal(firstText(allowed(await call(modern, 'echo.weather', { city: 'Bern' }))), 'sunny in Bern');
  });
});

describe("the audit with arguments and results logged: nothing planted, and not the caller's own token in any form", () => {
  let gw: Gateway;
  let client: Client | undefined;
  before(async () => {
    gw = await startGateway({ services: { echo: echoService() }, audit: { log_arguments: true, log_results: true } });
  });
  after(async () => {
    await client?.close().catch(() => undefined);
    await gw?.stop();
  });

  test('the corpus in arguments and result, and the token split across two arguments, base64 or URL-encoded, never reach the audit', async () => {
    const token = await gw.token({ sub: 'aud' });
    client = await connect(gw, 'legacy', { token });
    const half = Math.floor(token.length / 2);
    const b64 = Buffer.from(token).toString('base64');
    const text = [...CORPUS.filter((k) => typeof k.value === 'string').map((k) => k.value as string), b64].join('\n');
    const args: Record<string, unknown> = { text, head: token.slice(0, half), tail: token.slice(half), url: encodeURIComponent(token) };
    for (const k of CORPUS.filter((x) => typeof x.value === 'object')) args[k.id] = k.value;
    // Split across two arguments, and both halves in the result too (echo.echo has no redact
    // obligation here: the agent gets its text back; only the audit is censored).
    args.text = `${text}\n${token.slice(0, half)}\n${token.slice(half)}`;
    const r = await client.callTool({ name: 'echo.echo', arguments: args });
    assert.equal(firstText(r), args.text);
    await eventually(() =>
      readRecords(path.join(gw.dir, 'audit')).some((l) => l.rec.kind === 'outcome' && (l.rec as Record<string, any>).output !== undefined),
    );
    const audit = auditText(path.join(gw.dir, 'audit'));
    for (const k of CORPUS) assert.equal(audit.includes(k.planted), false, `${k.id} in the audit`);
    for (let i = 0; i + 16 <= token.length; i += 8) assert.equal(audit.includes(token.slice(i, i + 16)), false, 'a piece of the token in the audit');
    for (let i = 0; i + 16 <= b64.length; i += 8) assert.equal(audit.includes(b64.slice(i, i + 16)), false, 'a piece of the base64 token in the audit');
  });
});
