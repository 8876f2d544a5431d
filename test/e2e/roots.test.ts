/**
 * Issue #11 point 1, roots: never forwarded unless the config says so (`services.<name>.roots:
 * forward`), and then only for an agent that declared roots itself (point 3). A service's roots/list
 * raised during a call reaches exactly the calling agent (2026 agents: an input_required round; 2025
 * agents, SDK 1.x and 2.x: a roots/list request on their session) and its answer, validated as a
 * ListRootsResult, goes back. Off, or for an agent without roots: the service never learns of the
 * capability and a roots/list it sends anyway is refused naming why. A malformed answer is refused
 * with an exact error, recorded, and changes nothing for other agents.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { auditText, readRecords } from '../helpers/audit.js';
import { connect, connectV1, echoService, eventually, type Gateway, modernPost, startGateway } from '../helpers/harness.js';
import { fileLine } from '../helpers/watch.js';

const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';
const SCOPES = ['legacyecho:call', 'modernecho:call', 'plainlegacy:call', 'plainmodern:call', 'sessionecho:call', 'tightecho:call'];
/** The roots an agent named `who` answers with (one, under /work/<who>). */
const rootsOf = (who: string) => ({ roots: [{ uri: `file:///work/${who}`, name: who }] });
const rootsText = (who: string) => `roots ${JSON.stringify(rootsOf(who))}`;
const ROOTS_CAPS = { roots: { listChanged: true } };

describe('relay: roots, only where the config forwards them', () => {
  let gw: Gateway;
  let marker: string;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-marker-')), 'marker.log');
    gw = await startGateway({
      services: {
        legacyecho: echoService({ era: 'legacy', roots: 'forward' }, marker),
        modernecho: echoService({ era: 'modern', roots: 'forward' }),
        plainlegacy: echoService({ era: 'legacy' }),
        plainmodern: echoService({ era: 'modern' }),
        // One connection per 2025 agent session: it declares exactly that agent's relayed capabilities.
        sessionecho: echoService({ era: 'legacy', roots: 'forward', isolation: 'session' }),
        // Overflow off: every call shares the one connection, so a question with two calls in flight is ambiguous.
        tightecho: echoService({ era: 'legacy', roots: 'forward', overflow: { max: 0 } }, marker),
      },
    });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });
  const token = (sub: string) => gw.token({ sub, scopes: SCOPES });

  /** A 2.x client of `era` that declares roots and answers roots/list with its own; `asked` counts the questions. */
  async function agent2(era: 'modern' | 'legacy', who: string, capabilities: Record<string, unknown> = ROOTS_CAPS) {
    const client = await connect(gw, era, { token: await token(who), capabilities });
    clients.push(client);
    const seen = { asked: 0 };
    if ('roots' in capabilities)
      client.setRequestHandler('roots/list', async () => {
        seen.asked++;
        return rootsOf(who);
      });
    return { client, seen };
  }

  /** The SDK 1.x client, declaring roots and answering with `answer` (its own roots by default). */
  async function agent1(who: string, answer: () => unknown = () => rootsOf(who)) {
    const client = await connectV1(gw, { token: await token(who), capabilities: { roots: { listChanged: true } } });
    clients.push(client);
    const seen = { asked: 0 };
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      seen.asked++;
      return answer() as { roots: [] };
    });
    return { client, seen };
  }

  test('forwarded: the service sees roots (without listChanged) only for an agent that declared them', async () => {
    const withRoots = await agent2('modern', 'caps-roots');
    const without = await agent2('modern', 'caps-none', { elicitation: { form: {} } });
    assert.equal(text(await withRoots.client.callTool({ name: 'modernecho.caps', arguments: {} })), '{"roots":{}}');
    assert.equal(text(await without.client.callTool({ name: 'modernecho.caps', arguments: {} })), '{"elicitation":{"form":{}}}');
    // Not forwarded: the same agent's roots never reach the service.
    assert.equal(text(await withRoots.client.callTool({ name: 'plainmodern.caps', arguments: {} })), '{}');
    // A 2025 service learns at initialize what its shared connection relays: roots only where forwarded.
    const declared = async (svc: string) => JSON.parse(text(await withRoots.client.callTool({ name: `${svc}.caps`, arguments: {} }))) as unknown;
    assert.deepEqual(await declared('legacyecho'), { elicitation: { form: {}, url: {} }, sampling: {}, roots: {} });
    assert.deepEqual(await declared('plainlegacy'), { elicitation: { form: {}, url: {} }, sampling: {} });
  });

  for (const svc of ['legacyecho', 'modernecho'] as const) {
    test(`forwarded, ${svc}: the calling agent's own roots come back, for 2.x agents of both eras and the 1.x client`, async () => {
      const modern = await agent2('modern', `m-${svc}`);
      const legacy = await agent2('legacy', `l-${svc}`);
      const v1 = await agent1(`v1-${svc}`);
      assert.equal(text(await modern.client.callTool({ name: `${svc}.roots`, arguments: {} })), rootsText(`m-${svc}`));
      assert.equal(text(await legacy.client.callTool({ name: `${svc}.roots`, arguments: {} })), rootsText(`l-${svc}`));
      assert.equal(text(await v1.client.callTool({ name: `${svc}.roots`, arguments: {} })), rootsText(`v1-${svc}`));
      assert.deepEqual([modern.seen.asked, legacy.seen.asked, v1.seen.asked], [1, 1, 1], 'each agent was asked once, for its own call');
    });
  }

  test("a 2026 service's roots round is recorded like an elicitation round: decided, input_required, decided again; roots never in the audit", async () => {
    const a = await agent2('modern', 'audited-roots');
    assert.equal(text(await a.client.callTool({ name: 'modernecho.roots', arguments: {} })), rootsText('audited-roots'));
    // An outcome record is not awaited before the answer (only with audit.outcome_before_answer): wait for both.
    const outcomes = await eventually(() => {
      const recs = readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec);
      const decisions = recs.filter((r) => r.kind === 'decision' && (r.principal as { id?: string } | undefined)?.id === 'audited-roots');
      const found = decisions.map((d) => recs.find((r) => r.kind === 'outcome' && r.decision_id === d.decision_id)?.outcome);
      return found.length === 2 && found.every((o) => o !== undefined) ? found : undefined;
    });
    assert.deepEqual(outcomes, ['input_required', 'ok'], 'the first round and the retry are each decided, and each has its outcome');
    assert.ok(!auditText(path.join(gw.dir, 'audit')).includes('file:///work/'), 'no root URI is recorded');
    assert.ok(!gw.output().includes('file:///work/'), 'nor logged');
  });

  test('not forwarded (the default): the service never sees the capability, and a roots/list it sends anyway is refused naming why', async () => {
    const modern = await agent2('modern', 'off-modern');
    const v1 = await agent1('off-v1');
    // The services' own SDKs refuse to ask: the capability was never declared to them.
    const e = await modern.client.callTool({ name: 'plainmodern.roots', arguments: {} }).then(
      () => undefined,
      (err: unknown) => err as { code?: number; message?: string },
    );
    assert.equal(e?.code, -32021, JSON.stringify(e?.message));
    assert.equal(e?.message, "Cannot request input 'roots' (roots/list): the request's client capabilities do not declare the required capability");
    const r = await v1.client.callTool({ name: 'plainlegacy.roots', arguments: {} });
    assert.deepEqual(r, {
      content: [
        { type: 'text', text: "Cannot request input 'roots' (roots/list): the client on this 2025-era connection did not declare the required capability" },
      ],
      isError: true,
    });
    // A 2025 service that sends roots/list regardless gets the gateway's refusal, with the reason.
    assert.equal(
      text(await v1.client.callTool({ name: 'plainlegacy.roots-raw', arguments: {} })),
      'refused -32601 roots/list refused by the gateway: roots are not forwarded to this service (services.plainlegacy.roots is not "forward")',
    );
    assert.deepEqual([modern.seen.asked, v1.seen.asked], [0, 0], 'no agent was asked');
  });

  test('forwarded, but the agent declared no roots: refused to the service, the agent is never asked', async () => {
    const none = await agent2('modern', 'noroots-modern', { elicitation: { form: {} } });
    const e = await none.client.callTool({ name: 'modernecho.roots', arguments: {} }).then(
      () => undefined,
      (err: unknown) => err as { code?: number; message?: string },
    );
    assert.equal(e?.code, -32021, JSON.stringify(e?.message));
    assert.equal(e?.message, "Cannot request input 'roots' (roots/list): the request's client capabilities do not declare the required capability");
    // The 2025 service's connection declared roots (it serves agents that may have them): the gateway refuses per call.
    const legacy = await agent2('legacy', 'noroots-legacy', { elicitation: { form: {} } });
    const r = await legacy.client.callTool({ name: 'legacyecho.roots', arguments: {} });
    assert.deepEqual(r, {
      content: [
        {
          type: 'text',
          text: "Fulfilling input required by 'tools/call' failed: roots/list refused by the gateway: the calling agent did not declare roots",
        },
      ],
      isError: true,
    });
    assert.equal(
      text(await legacy.client.callTool({ name: 'legacyecho.roots-raw', arguments: {} })),
      'refused -32601 roots/list refused by the gateway: the calling agent did not declare roots',
    );
  });

  test("isolation: session: each agent's own connection declares roots only if that agent did, and is answered by it", async () => {
    const withRoots = await agent2('legacy', 'iso-roots');
    const without = await agent2('legacy', 'iso-none', { elicitation: { form: {} } });
    const declared = async (a: typeof withRoots) => JSON.parse(text(await a.client.callTool({ name: 'sessionecho.caps', arguments: {} }))) as unknown;
    assert.deepEqual(await declared(withRoots), { roots: {} });
    assert.deepEqual(await declared(without), { elicitation: { form: {} } });
    assert.equal(text(await withRoots.client.callTool({ name: 'sessionecho.roots', arguments: {} })), rootsText('iso-roots'));
    // The agent without roots: its connection never declared them, so the service's own SDK refuses to ask.
    assert.deepEqual(await without.client.callTool({ name: 'sessionecho.roots', arguments: {} }), {
      content: [
        { type: 'text', text: "Cannot request input 'roots' (roots/list): the client on this 2025-era connection did not declare the required capability" },
      ],
      isError: true,
    });
    assert.equal(
      text(await without.client.callTool({ name: 'sessionecho.roots-raw', arguments: {} })),
      'refused -32601 roots/list refused by the gateway: the calling agent did not declare roots',
    );
    assert.equal(withRoots.seen.asked, 1);
  });

  test('a roots/list that cannot be attributed to exactly one call is refused, logged without contents', async () => {
    const a = await agent2('legacy', 'busy-a');
    const b = await agent2('legacy', 'busy-b');
    const tag = `roots-ambiguous-${Date.now()}`;
    const ac = new AbortController();
    const slow = a.client.callTool({ name: 'tightecho.slow', arguments: { tag, ms: 20_000 } }, { signal: ac.signal }).catch(() => undefined);
    await fileLine(marker, `started ${tag}`);
    assert.equal(
      text(await b.client.callTool({ name: 'tightecho.roots-raw', arguments: {} })),
      'refused -32600 roots/list refused by the gateway: it cannot be attributed to exactly one call in progress',
    );
    assert.deepEqual([a.seen.asked, b.seen.asked], [0, 0], 'no agent was asked');
    ac.abort();
    await slow;
    assert.match(gw.output(), /"method":"roots\/list","inflight":2,"requests":2,"msg":"server-to-client request refused: cannot attribute it to one call"/);
    // With one call in flight again, the same request reaches its own agent.
    assert.equal(text(await b.client.callTool({ name: 'tightecho.roots-raw', arguments: {} })), rootsText('busy-b'));
  });

  test("a malformed answer from a 2026 agent: an exact -32602, recorded, the service's request refused; other agents unaffected", async () => {
    const t = await token('malformed-raw');
    const call = async (name: string, extra: Record<string, unknown> = {}) =>
      (await modernPost(gw, t, 'tools/call', { name, arguments: {}, ...extra }, { capabilities: ROOTS_CAPS })).at(-1)!;
    for (const svc of ['legacyecho', 'modernecho'] as const) {
      const first = await call(`${svc}.roots`);
      assert.equal(first.result?.resultType, 'input_required', JSON.stringify(first));
      const [key, req] = Object.entries(first.result.inputRequests as Record<string, { method: string }>)[0]!;
      assert.equal(req.method, 'roots/list');
      const bad = await call(`${svc}.roots`, {
        requestState: first.result.requestState,
        inputResponses: { [key]: { roots: [{ uri: 'https://not.a.file/' }] } },
      });
      assert.equal(bad.error?.code, -32602, JSON.stringify(bad));
      assert.equal(
        bad.error?.message,
        svc === 'legacyecho'
          ? 'the answer to the input request (roots/list) is not a valid ListRootsResult; the call was ended'
          : 'the answer to the input request (roots/list) is not a valid ListRootsResult',
      );
    }
    const recs = readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec);
    // The 2025 service's parked call: its outcome says why it ended.
    assert.ok(
      recs.some(
        (r) =>
          r.kind === 'outcome' &&
          r.outcome === 'refused' &&
          JSON.stringify(r.error) ===
            '{"code":"ERR_INPUT_ANSWER_INVALID","message":"the answer to the input request (roots/list) is not a valid ListRootsResult; the call was ended"}',
      ),
      'the ended call is recorded',
    );
    // The 2026 service's retry: refused before anything was decided or forwarded, as an event.
    assert.ok(
      recs.some(
        (r) => r.kind === 'event' && JSON.stringify(r).includes('ERR_INPUT_ANSWER_INVALID') && (r.principal as { id?: string })?.id === 'malformed-raw',
      ),
      'the refused retry is recorded',
    );
    // The same check for every input request, and for prompts/get rounds: an elicitation answer that is not one.
    const ask = await modernPost(gw, t, 'prompts/get', { name: 'modernecho.ask' }, { capabilities: { elicitation: { form: {} } } });
    const round = ask.at(-1)!;
    assert.equal(round.result?.resultType, 'input_required', JSON.stringify(round));
    const badAsk = (
      await modernPost(
        gw,
        t,
        'prompts/get',
        { name: 'modernecho.ask', requestState: round.result.requestState, inputResponses: { name: { action: 'maybe' } } },
        { capabilities: { elicitation: { form: {} } } },
      )
    ).at(-1)!;
    assert.deepEqual(badAsk.error, { code: -32602, message: 'the answer to the input request (elicitation/create) is not a valid ElicitResult' });
    // Nothing changed for anyone else: the next agents' roots still come back, on both services.
    const other = await agent1('after-malformed');
    for (const svc of ['legacyecho', 'modernecho'])
      assert.equal(text(await other.client.callTool({ name: `${svc}.roots`, arguments: {} })), rootsText('after-malformed'));
  });

  for (const svc of ['modernecho', 'legacyecho'] as const) {
    test(`a malformed answer from a 1.x agent (2025 session), ${svc}: the exact reason, recorded, never handed to the service, blocks nobody`, async () => {
      // The SDK's 2025 shim validates the agent's answer itself and ends the call with a tool error
      // (its 2025 idiom for tools/call); the gateway records it and ends a call parked for it.
      const who = `malformed-v1-${svc}`;
      const v1 = await agent1(who, () => ({ roots: [{ uri: 'https://not.a.file/' }] }));
      const r = await v1.client.callTool({ name: `${svc}.roots`, arguments: {} });
      const issues = [
        {
          origin: 'string',
          code: 'invalid_format',
          format: 'starts_with',
          prefix: 'file://',
          path: ['roots', 0, 'uri'],
          message: 'Invalid string: must start with "file://"',
        },
      ];
      assert.deepEqual(r, {
        content: [
          { type: 'text', text: `Fulfilling input required by 'tools/call' failed: Invalid result for roots/list: ${JSON.stringify(issues, null, 2)}` },
        ],
        isError: true,
      });
      const message = 'the answer to the input request (roots/list) is not a valid ListRootsResult; the call was ended';
      const recs = () => readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec);
      const mine = (x: Record<string, unknown>) => (x.principal as { id?: string } | undefined)?.id === who;
      // Recorded as a refused answer (written before the agent's request ended).
      const refusal = recs().find((x) => x.kind === 'event' && mine(x) && JSON.stringify(x).includes('ERR_INPUT_ANSWER_INVALID'));
      assert.ok(refusal && JSON.stringify(refusal).includes(message), JSON.stringify(refusal));
      // One decision: the first round; the answer never reached the service.
      const decisions = recs().filter((x) => x.kind === 'decision' && mine(x));
      assert.equal(decisions.length, 1);
      const outcome = recs().find((x) => x.kind === 'outcome' && x.decision_id === decisions[0]!.decision_id);
      if (svc === 'modernecho') assert.equal(outcome?.outcome, 'input_required');
      else {
        // The 2025 service's call was parked for the answer: ended, its roots/list refused.
        assert.equal(outcome?.outcome, 'refused');
        assert.deepEqual(outcome?.error, { code: 'ERR_INPUT_ANSWER_INVALID', message });
      }
      // Nobody is blocked: the next agent's roots come back at once (a parked call would make its request ambiguous).
      const next = await agent1(`${who}-next`);
      assert.equal(text(await next.client.callTool({ name: `${svc}.roots`, arguments: {} })), rootsText(`${who}-next`));
    });
  }
});
