/**
 * Issue #11 point 3: capabilities are the agent's. A 2026-07-28 service gets the calling agent's own
 * capabilities in each request's envelope (never the gateway's; roots never); an input request for a
 * capability the agent did not declare never reaches it, from a service of either era.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, connectV1, echoService, type Gateway, startGateway } from '../helpers/harness.js';

const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';

describe("relay: capabilities are the agent's", () => {
  let gw: Gateway;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    gw = await startGateway({ services: { legacyecho: echoService({ era: 'legacy' }), modernecho: echoService({ era: 'modern' }) } });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });
  const as = async (era: 'modern' | 'legacy', capabilities: Record<string, unknown>): Promise<Client> => {
    const c = await connect(gw, era, { token: await gw.token({ sub: `caps-${era}-${JSON.stringify(capabilities)}` }), capabilities });
    clients.push(c);
    return c;
  };

  for (const era of ['modern', 'legacy'] as const) {
    test(`a 2026 service sees exactly what the ${era} agent declared, per request`, async () => {
      const none = await as(era, {});
      const form = await as(era, { elicitation: { form: {} }, roots: { listChanged: true } });
      const sampling = await as(era, { sampling: {} });
      assert.equal(text(await none.callTool({ name: 'modernecho.caps', arguments: {} })), '{}');
      assert.equal(text(await form.callTool({ name: 'modernecho.caps', arguments: {} })), '{"elicitation":{"form":{}}}', 'roots are never relayed');
      assert.equal(text(await sampling.callTool({ name: 'modernecho.caps', arguments: {} })), '{"sampling":{}}');
      // Interleaved: each request carries its own agent's.
      const [a, b] = await Promise.all([none.callTool({ name: 'modernecho.caps', arguments: {} }), form.callTool({ name: 'modernecho.caps', arguments: {} })]);
      assert.deepEqual([text(a), text(b)], ['{}', '{"elicitation":{"form":{}}}']);
    });
  }

  test("a 2026 service asked to elicit from an agent without elicitation refuses: it saw the agent's capabilities, not the gateway's", async () => {
    // The service's SDK checks its input requests against the request's envelope: before #11 the
    // envelope held the gateway's (elicitation, sampling) and the question went out. (The gateway
    // refuses such a round itself too, pipeline/capabilities.test.ts.)
    const none = await as('modern', {});
    const e = await none.callTool({ name: 'modernecho.confirm-raw', arguments: {} }).then(
      () => undefined,
      (err: unknown) => err as { code?: number; message?: string },
    );
    assert.equal(e?.code, -32021, JSON.stringify(e?.message));
    assert.equal(e?.message, "Cannot request input 'ok' (elicitation/create): the request's client capabilities do not declare the required capability");
    // The control: an agent that declared elicitation is asked.
    const form = await as('modern', { elicitation: { form: {} } });
    form.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: {} }));
    assert.equal(text(await form.callTool({ name: 'modernecho.confirm-raw', arguments: {} })), 'answered');
  });

  test("a 2025 service's elicitation for an agent without elicitation: refused to the service, the agent is never asked", async () => {
    const v1 = await connectV1(gw, { token: await gw.token({ sub: 'caps-v1-none' }), capabilities: {} });
    clients.push(v1);
    const r = await v1.callTool({ name: 'legacyecho.confirm', arguments: { question: 'ok?' } });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.deepEqual(r.content, [
      {
        type: 'text',
        text: "Fulfilling input required by 'tools/call' failed: elicitation/create refused by the gateway: the calling agent did not declare elicitation (form mode)",
      },
    ]);
    // The control: the same call from an agent that declared elicitation is answered.
    const asker = await as('legacy', { elicitation: { form: {} } });
    asker.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { ok: true } }));
    assert.equal(text(await asker.callTool({ name: 'legacyecho.confirm', arguments: { question: 'ok?' } })), 'confirmed');
  });
});
