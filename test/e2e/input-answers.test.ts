/**
 * A 2025 agent that fails a service's input request (elicitation, sampling; roots are in roots.test):
 * with an answer that is not the request's result type, or with an error (which is what the 1.x
 * client sends when its own handler's answer fails its check). The SDK's 2025 shim ends the agent's
 * request with a tool error; the gateway records why and ends a call parked for the answer at once,
 * instead of holding the service's question (and its connection, which takes no new calls while one
 * waits) until the input request expires.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CreateMessageResult,
  CreateMessageRequestSchema,
  type ElicitResult,
  ElicitRequestSchema,
  type JSONRPCMessage,
} from '@modelcontextprotocol/sdk/types.js';
import { readRecords } from '../helpers/audit.js';
import { connectV1, echoService, eventually, type Gateway, startGateway } from '../helpers/harness.js';

const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';

/** Each input request a tool of the echo fixture makes, a malformed answer to it and a good one. */
const KINDS = [
  {
    method: 'elicitation/create',
    type: 'ElicitResult',
    tool: 'confirm',
    args: { question: 'go ahead?' },
    capabilities: { elicitation: { form: {} } },
    // Fails the 1.x client's own check: it answers the request with -32602 instead.
    checked: { action: 'maybe' },
    checkedError: 'MCP error -32602: Invalid elicitation result',
    good: { action: 'accept', content: { ok: true } },
    answered: 'confirmed',
  },
  {
    method: 'sampling/createMessage',
    type: 'CreateMessageResult',
    tool: 'sample',
    args: { prompt: 'say hi' },
    capabilities: { sampling: {} },
    checked: { model: 5 },
    checkedError: 'MCP error -32602: Invalid sampling result',
    good: { model: 'm-1', role: 'assistant', content: { type: 'text', text: 'hi' } },
    answered: 'sampled hi (m-1)',
  },
] as const;

describe("a 2025 agent's malformed answer to an input request", () => {
  let gw: Gateway;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    gw = await startGateway({
      services: {
        // One connection and no overflow: a call still parked for its answer would hold the next call's question.
        legacyecho: echoService({ era: 'legacy', overflow: { max: 0 } }),
        modernecho: echoService({ era: 'modern' }),
      },
    });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });

  /**
   * A 1.x agent (2025 session) answering the kind's input request with `answer`; `onWire` replaces
   * the result it sends after the client's own check (a malformed answer on the wire).
   */
  async function agent(who: string, kind: (typeof KINDS)[number], answer: object, onWire?: object) {
    const rewrite = onWire && ((m: JSONRPCMessage) => ('result' in m ? { ...m, result: { ...onWire } } : m));
    const token = await gw.token({ sub: who, scopes: ['legacyecho:call', 'modernecho:call'] });
    const client = await connectV1(gw, { token, capabilities: kind.capabilities, ...(rewrite ? { rewrite } : {}) });
    clients.push(client);
    // The 1.x client sends what its handler returns after checking it (elicitation, sampling).
    if (kind.method === 'elicitation/create') client.setRequestHandler(ElicitRequestSchema, async () => answer as ElicitResult);
    else client.setRequestHandler(CreateMessageRequestSchema, async () => answer as CreateMessageResult);
    return client;
  }

  const recs = () => readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec);

  /** The one decision of `who`'s calls, its outcome, and the refusal event recorded for it (if any). */
  function recorded(who: string) {
    const mine = (x: Record<string, unknown>) => (x.principal as { id?: string } | undefined)?.id === who;
    const decisions = recs().filter((x) => x.kind === 'decision' && mine(x));
    assert.equal(decisions.length, 1);
    return {
      outcome: recs().find((x) => x.kind === 'outcome' && x.decision_id === decisions[0]!.decision_id),
      refusal: recs().find((x) => x.kind === 'event' && mine(x) && JSON.stringify(x).includes('ERR_INPUT_ANSWER_INVALID')),
    };
  }

  /** Calls in flight at `svc` (its /readyz entry). */
  const inFlight = async (svc: string) =>
    ((await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; in_flight: number }> }).services.find((s) => s.name === svc)
      ?.in_flight;

  for (const kind of KINDS)
    for (const svc of ['legacyecho', 'modernecho'] as const) {
      const next = async (who: string) => {
        // The service's call ends once it has the refusal of its question (a parked call would stay
        // in flight until the input request expired); then the next agent's question is asked on the
        // one connection and its answer reaches the service.
        await eventually(async () => (await inFlight(svc)) === 0);
        const c = await agent(`${who}-next`, kind, kind.good);
        assert.equal(text(await c.callTool({ name: `${svc}.${kind.tool}`, arguments: kind.args })), kind.answered);
      };

      test(`${kind.method}, ${svc}: an answer that is not a ${kind.type}: the tool error, the refusal recorded, the call ended`, async () => {
        const who = `malformed-${kind.tool}-${svc}`;
        const r = await (await agent(who, kind, kind.good, kind.checked)).callTool({ name: `${svc}.${kind.tool}`, arguments: kind.args });
        assert.equal(r.isError, true, JSON.stringify(r));
        assert.ok(text(r).startsWith(`Fulfilling input required by 'tools/call' failed: Invalid `), text(r));
        const message = `the answer to the input request (${kind.method}) is not a valid ${kind.type}; the call was ended`;
        const { outcome, refusal } = recorded(who);
        assert.ok(refusal && JSON.stringify(refusal).includes(message), JSON.stringify(refusal));
        if (svc === 'modernecho') assert.equal(outcome?.outcome, 'input_required');
        else assert.deepEqual([outcome?.outcome, outcome?.error], ['refused', { code: 'ERR_INPUT_ANSWER_INVALID', message }]);
        await next(who);
      });

      test(`${kind.method}, ${svc}: an error for an answer (the 1.x client's own check failed): the tool error, the call ended and recorded`, async () => {
        const who = `refused-${kind.tool}-${svc}`;
        const r = await (await agent(who, kind, kind.checked)).callTool({ name: `${svc}.${kind.tool}`, arguments: kind.args });
        assert.equal(r.isError, true, JSON.stringify(r));
        assert.ok(text(r).startsWith(`Fulfilling input required by 'tools/call' failed: ${kind.checkedError}: `), text(r));
        const { outcome, refusal } = recorded(who);
        assert.equal(refusal, undefined);
        const message = `the agent did not answer the input request (${kind.method}); the call was ended`;
        if (svc === 'modernecho') assert.equal(outcome?.outcome, 'input_required');
        else assert.deepEqual([outcome?.outcome, outcome?.error], ['refused', { code: 'ERR_INPUT_REQUEST_REFUSED', message }]);
        await next(who);
      });
    }
});
