/**
 * A 2026-07-28 service's list changes reach the gateway only on a listen stream. The SDK opens that
 * stream when it connects with discovery, and never again. So the gateway opens it itself after a
 * restart (a connect from the known DiscoverResult). It also listens again when the service did not
 * acknowledge the stream, or ended it. Each case ends with a tools list change that the agent sees: without a
 * live stream, the gateway's catalog would keep the old list (every reconnect is from the known
 * DiscoverResult).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, echoService, eventually, FIXTURE, type Gateway, startGateway } from '../helpers/harness.js';

const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';
/** Short waits between restarts and listens, so the cases finish quickly. */
const RESTART = { initial_delay_ms: 50, max_delay_ms: 200 };

describe('2026-07-28 services: the listen for list changes', () => {
  let gw: Gateway;
  let agent: Client;
  before(async () => {
    gw = await startGateway({
      services: {
        // Its first subscriptions/listen acknowledgement never leaves: the SDK's own listen at connect fails.
        noack: { ...echoService({ era: 'modern', connect_timeout_ms: 1000, restart: RESTART }), args: [FIXTURE, '--drop-listen-acks', '1'] },
        restarts: echoService({ era: 'modern', restart: RESTART }),
        // Ends its stream of list changes when `toggle` is called, before it announces the change.
        ends: { ...echoService({ era: 'modern', restart: RESTART }), args: [FIXTURE, '--end-list-listens-on-toggle'] },
      },
    });
    agent = await connect(gw, 'modern', { token: await gw.token({ scopes: ['noack:call', 'restarts:call', 'ends:call'] }) });
  });
  after(async () => {
    await agent.close();
    await gw.stop();
  });

  const listed = async (name: string) => (await agent.listTools(undefined, { cacheMode: 'bypass' })).tools.some((t) => t.name === name);
  const service = async (name: string) =>
    ((await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; restarts: number; state: string }> }).services.find(
      (s) => s.name === name,
    )!;

  test('a service that did not acknowledge the listen at connect: the gateway listens again, and sees its next change', async () => {
    assert.equal(await listed('noack.extra'), false);
    assert.equal(text(await agent.callTool({ name: 'noack.toggle', arguments: {} })), 'extra on');
    // Announced on the new stream, or read with the lists once it is open: either way the agent sees it.
    await eventually(() => listed('noack.extra'));
    assert.match(gw.output(), /"service":"noack".*"msg":"service did not acknowledge the listen for list changes; listening again"/);
  });

  test('a service that ends the stream of list changes: the gateway listens again, and reads the change it missed', async () => {
    assert.equal(await listed('ends.extra'), false);
    assert.equal(text(await agent.callTool({ name: 'ends.toggle', arguments: {} })), 'extra on');
    await eventually(() => listed('ends.extra'));
    assert.match(gw.output(), /"service":"ends".*"why":"graceful".*"msg":"service ended the stream of list changes; listening again"/);
  });

  test('a service restarted (connected from its known DiscoverResult): the gateway listens itself, and sees its next change', async () => {
    const before = (await service('restarts')).restarts;
    await agent.callTool({ name: 'restarts.crash', arguments: {} }).catch(() => undefined);
    await eventually(async () => {
      const s = await service('restarts');
      return s.restarts > before && s.state === 'ready';
    }, 30_000);
    assert.equal(await listed('restarts.extra'), false);
    assert.equal(text(await agent.callTool({ name: 'restarts.toggle', arguments: {} })), 'extra on');
    await eventually(() => listed('restarts.extra'));
  });
});
