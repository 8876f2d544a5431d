/**
 * Consent bound to the exact call (issue #14), end to end: a real gateway process, the echo fixture
 * as a real child process, both engines stating the consent obligation, and real SDK clients
 * answering the question: the 2.x client on 2026-07-28 (input_required rounds) and on 2025
 * sessions, and the 1.x client most agents use (elicitation/create). Approval, reuse for the same
 * call only, decline, cancel, expiry, arguments changed after approval, an agent that cannot ask,
 * two agents at once; every step in the audit, no argument in it.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { Client as Client1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as Transport1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { auditText, readRecords } from '../helpers/audit.js';
import { connect, echoService, eventually, type Gateway, modernPost, startGateway } from '../helpers/harness.js';
import { copyPolicies, firstText } from '../helpers/policy.js';

type Answer = { action: 'accept' | 'decline' | 'cancel'; content?: Record<string, string | number | boolean | string[]> };
type Asked = { message: string; requestedSchema?: unknown };

/** echo.echo needs consent, stated by both engines. */
function consentPolicies(): ReturnType<typeof copyPolicies> {
  const p = copyPolicies();
  writeFileSync(
    path.join(p.rego, 'zz_consent.rego'),
    'package micro_mcp.authz\n\n_consent if {\n\t_granted("service_call_scope")\n\tinput.tool.name == "echo.echo"\n}\n',
  );
  writeFileSync(
    path.join(p.cedar, 'zz_consent.cedar'),
    '@id("echo_consent")\n@obligation("consent")\npermit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"echo.echo")\nwhen { context.scopes.contains("echo:call") };\n',
  );
  return p;
}

/** What a call ended as: the text, or the JSON-RPC error's code and stable code. */
async function outcomeOf(p: Promise<unknown>): Promise<{ text: string } | { code: number; err: string; message: string }> {
  try {
    const r = (await p) as { content?: unknown };
    return { text: firstText(r) };
  } catch (e) {
    const x = e as { code: number; message: string; data?: { code?: string } };
    return { code: x.code, err: x.data?.code ?? '', message: x.message };
  }
}

describe('consent bound to the exact call', () => {
  let gw: Gateway;
  const closers: Array<() => Promise<unknown>> = [];
  const records = () => readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec as Record<string, any>);
  const outcomesOf = (sub: string) =>
    records()
      .filter((r) => r.kind === 'outcome' && r.principal?.id === sub)
      .map((r) => `${r.outcome}:${r.consent?.result ?? '-'}${r.error ? `:${r.error.code}` : ''}`);

  before(async () => {
    const p = consentPolicies();
    gw = await startGateway({ services: { echo: echoService() }, policy: { rego: { dir: p.rego }, cedar: { dir: p.cedar } } });
  });
  after(async () => {
    for (const c of closers) await c().catch(() => undefined);
    await gw?.stop();
  });

  /** A 2.x client that answers every consent question with `answer`, recording what it was shown. */
  async function agent2(sub: string, era: 'modern' | 'legacy', answer: (q: Asked) => Answer | Promise<Answer>, asked: Asked[] = []): Promise<Client> {
    const c = await connect(gw, era, { token: await gw.token({ sub, purpose: 'release-notes' }) });
    c.setRequestHandler('elicitation/create', async (req) => {
      const q = req.params as Asked;
      asked.push(q);
      return answer(q);
    });
    closers.push(() => c.close());
    return c;
  }

  /** A 1.x SDK client (2025 protocol, elicitation/create), as most agents are today. */
  async function agent1(sub: string, answer: (q: Asked) => Answer | Promise<Answer>, asked: Asked[] = []): Promise<Client1> {
    const c = new Client1({ name: 'agent-1x', version: '1.0.0' }, { capabilities: { elicitation: {} } });
    c.setRequestHandler(ElicitRequestSchema, async (req) => {
      asked.push(req.params as Asked);
      return answer(req.params as Asked);
    });
    const token = await gw.token({ sub, purpose: 'release-notes' });
    await c.connect(new Transport1(new URL(gw.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    closers.push(() => c.close());
    return c;
  }

  test('2026-07-28: the user sees tool, purpose and the arguments without secrets; approval forwards the call, the same call reuses it, other arguments ask again', async () => {
    const asked: Asked[] = [];
    const c = await agent2('ann', 'modern', () => ({ action: 'accept', content: { approve: true } }), asked);
    const args = { text: 'ship it, mail ann@example.org, key AKIAIOSFODNN7EXAMPLE' };
    assert.deepEqual(await outcomeOf(c.callTool({ name: 'echo.echo', arguments: args })), { text: args.text });
    assert.equal(asked.length, 1);
    const m = asked[0]!.message;
    assert.match(m, /^Allow echo\.echo\?\nPurpose: release-notes\nArguments:\n {2}text: ship it, mail \[REDACTED\], key \[REDACTED\]\n/);
    assert.doesNotMatch(m, /ann@example\.org|AKIAIOSFODNN7EXAMPLE/);
    // The same call: the grant holds, nobody is asked.
    assert.deepEqual(await outcomeOf(c.callTool({ name: 'echo.echo', arguments: args })), { text: args.text });
    assert.equal(asked.length, 1);
    // Other arguments are another call: asked again.
    assert.deepEqual(await outcomeOf(c.callTool({ name: 'echo.echo', arguments: { text: 'other' } })), { text: 'other' });
    assert.equal(asked.length, 2);
    await eventually(() => outcomesOf('ann').length === 5);
    assert.deepEqual(outcomesOf('ann'), ['input_required:asked', 'ok:granted', 'ok:reused', 'input_required:asked', 'ok:granted']);
    const granted = records().find((r) => r.kind === 'outcome' && r.principal?.id === 'ann' && r.consent?.result === 'granted');
    assert.ok(Date.parse(granted?.consent.expires_at) > Date.now());
    const audit = auditText(path.join(gw.dir, 'audit'));
    assert.equal(audit.includes('AKIAIOSFODNN7EXAMPLE') || audit.includes('ann@example.org') || audit.includes('ship it'), false);
  });

  test('2025, the 1.x SDK client: a decline is a distinct denial and nothing is forwarded', async () => {
    const asked: Asked[] = [];
    const c = await agent1('dan', () => ({ action: 'decline' }), asked);
    const o = await outcomeOf(c.callTool({ name: 'echo.echo', arguments: { text: 'no' } }));
    // The 1.x client prefixes the JSON-RPC error's message with its code.
    assert.deepEqual(o, { code: -32003, err: 'ERR_CONSENT_DECLINED', message: 'MCP error -32003: the user declined this call' });
    assert.equal(asked.length, 1);
    assert.match(asked[0]!.message, /^Allow echo\.echo\?/);
    await eventually(() => outcomesOf('dan').length === 2);
    assert.deepEqual(outcomesOf('dan'), ['input_required:asked', 'refused:declined:ERR_CONSENT_DECLINED']);
  });

  test('2025 session of the 2.x client: cancel is its own denial; accept without approve is a decline', async () => {
    const cancel = await agent2('cat', 'legacy', () => ({ action: 'cancel' }));
    assert.deepEqual(await outcomeOf(cancel.callTool({ name: 'echo.echo', arguments: { text: 'x' } })), {
      code: -32003,
      err: 'ERR_CONSENT_CANCELLED',
      message: 'the user cancelled the consent request',
    });
    const no = await agent2('nat', 'legacy', () => ({ action: 'accept', content: { approve: false } }));
    assert.deepEqual(await outcomeOf(no.callTool({ name: 'echo.echo', arguments: { text: 'x' } })), {
      code: -32003,
      err: 'ERR_CONSENT_DECLINED',
      message: 'the user declined this call',
    });
  });

  test('an agent without the elicitation capability gets a clear denial, never a silent allow (both eras)', async () => {
    for (const [era, sub] of [
      ['modern', 'mute-modern'],
      ['legacy', 'mute-legacy'],
    ] as const) {
      const c = await connect(gw, era, { token: await gw.token({ sub }), capabilities: {} });
      closers.push(() => c.close());
      assert.deepEqual(await outcomeOf(c.callTool({ name: 'echo.echo', arguments: { text: 'x' } })), {
        code: -32003,
        err: 'ERR_CONSENT_REQUIRED',
        message: "this call needs the user's consent, and the agent cannot ask its user (it did not declare the elicitation capability)",
      });
      await eventually(() => outcomesOf(sub).length === 1);
      assert.deepEqual(outcomesOf(sub), ['refused:unavailable:ERR_CONSENT_REQUIRED']);
    }
  });

  test('an approval does not cover arguments changed after it was given', async () => {
    const token = await gw.token({ sub: 'mal' });
    const caps = { elicitation: { form: {} } };
    const [first] = await modernPost(gw, token, 'tools/call', { name: 'echo.echo', arguments: { text: 'read the notes' } }, { capabilities: caps });
    const res = first?.result as { resultType?: string; requestState: string; inputRequests: Record<string, { method: string }> };
    assert.equal(res.resultType, 'input_required');
    assert.deepEqual(
      Object.values(res.inputRequests).map((r) => r.method),
      ['elicitation/create'],
    );
    const key = Object.keys(res.inputRequests)[0]!;
    const [retry] = await modernPost(
      gw,
      token,
      'tools/call',
      {
        name: 'echo.echo',
        arguments: { text: 'delete everything' },
        requestState: res.requestState,
        inputResponses: { [key]: { action: 'accept', content: { approve: true } } },
      },
      { capabilities: caps },
    );
    assert.equal(retry?.error?.code, -32003);
    assert.equal(retry?.error?.data?.code, 'ERR_CONSENT_MISMATCH');
    assert.equal(retry?.error?.message, 'the arguments changed after the user was asked; the consent does not cover this call');
    // Nothing ran: the echo would have answered "delete everything".
    await eventually(() => outcomesOf('mal').length === 2);
    assert.deepEqual(outcomesOf('mal'), ['input_required:asked', 'refused:mismatch:ERR_CONSENT_MISMATCH']);
  });

  test("two agents at once, each asked about its own call: one approves, one declines; a grant is the principal's own", async () => {
    let release!: () => void;
    const bothAsked = new Promise<void>((r) => (release = r));
    let pending = 2;
    const arrive = async () => {
      if (--pending === 0) release();
      await bothAsked; // each answer waits until both questions are out
    };
    const amy = await agent2('amy', 'modern', async () => (await arrive(), { action: 'accept', content: { approve: true } }));
    const bobAsked: Asked[] = [];
    const bob = await agent1('bob', async () => (await arrive(), { action: 'decline' }), bobAsked);
    const same = { text: 'joint release' };
    const [a, b] = await Promise.all([
      outcomeOf(amy.callTool({ name: 'echo.echo', arguments: same })),
      outcomeOf(bob.callTool({ name: 'echo.echo', arguments: same })),
    ]);
    assert.deepEqual(a, { text: 'joint release' });
    assert.deepEqual(b, { code: -32003, err: 'ERR_CONSENT_DECLINED', message: 'MCP error -32003: the user declined this call' });
    // Amy's approval of the very same call is not Bob's: he is asked again.
    await outcomeOf(bob.callTool({ name: 'echo.echo', arguments: same }));
    assert.equal(bobAsked.length, 2);
  });
});

describe('consent that expires', () => {
  let gw: Gateway;
  const closers: Array<() => Promise<unknown>> = [];
  before(async () => {
    const p = consentPolicies();
    gw = await startGateway({
      services: { echo: echoService() },
      policy: { rego: { dir: p.rego }, cedar: { dir: p.cedar } },
      consent: { ask_ttl_s: 1, grant_ttl_s: 1 },
    });
  });
  after(async () => {
    for (const c of closers) await c().catch(() => undefined);
    await gw?.stop();
  });

  test('an answer after the question expired is denied; a grant past its expiry is asked again', async () => {
    const late = await connect(gw, 'modern', { token: await gw.token({ sub: 'lou' }) });
    closers.push(() => late.close());
    // The user answers after the 1 s the question is open (the scenario is the delay itself).
    late.setRequestHandler('elicitation/create', async () => {
      await new Promise((r) => setTimeout(r, 1500));
      return { action: 'accept', content: { approve: true } };
    });
    assert.deepEqual(await outcomeOf(late.callTool({ name: 'echo.echo', arguments: { text: 'late' } })), {
      code: -32003,
      err: 'ERR_CONSENT_EXPIRED',
      message: 'the consent request expired before the user answered',
    });

    let asked = 0;
    const quick = await connect(gw, 'modern', { token: await gw.token({ sub: 'qui' }) });
    closers.push(() => quick.close());
    quick.setRequestHandler('elicitation/create', async () => (asked++, { action: 'accept', content: { approve: true } }));
    assert.deepEqual(await outcomeOf(quick.callTool({ name: 'echo.echo', arguments: { text: 'q' } })), { text: 'q' });
    assert.equal(asked, 1);
    await new Promise((r) => setTimeout(r, 1200)); // past the 1 s grant
    assert.deepEqual(await outcomeOf(quick.callTool({ name: 'echo.echo', arguments: { text: 'q' } })), { text: 'q' });
    assert.equal(asked, 2);
  });
});
