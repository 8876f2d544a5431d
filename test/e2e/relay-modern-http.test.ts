/**
 * Issue #11 point 7: a 2026-07-28 service over Streamable HTTP (the echo fixture serving only
 * 2026-07-28, a real child process) connects without a stall whatever `era` says, and its list
 * changes reach agents of both eras.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { connect, eventually, type Gateway, startGateway, startHttpFixture } from '../helpers/harness.js';

for (const era of ['auto', 'modern'] as const) {
  describe(`a 2026-07-28 HTTP service with era: ${era}`, () => {
    let gw: Gateway;
    let fixture: { proc: ChildProcess; url: string };
    before(async () => {
      fixture = await startHttpFixture({ modernOnly: true });
      // A stall would hold the service down for connect_timeout_ms (60 s); the test waits 15 s at most.
      gw = await startGateway({ services: { web: { transport: 'http', url: fixture.url, era, connect_timeout_ms: 60_000 } } });
    });
    after(async () => {
      await gw?.stop();
      fixture?.proc.kill();
    });

    test('it is ready without waiting out connect_timeout_ms, negotiated as 2026-07-28', async () => {
      const svc = await eventually(async () => {
        const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; state: string; era?: string }> };
        return ready.services.find((s) => s.name === 'web' && s.state === 'ready');
      }, 15_000);
      assert.equal(svc?.era, 'modern');
    });

    test('its list changes reach a 2025 agent and a 2026 agent', async () => {
      const scopes = ['web:call'];
      const legacy = await connect(gw, 'legacy', { token: await gw.token({ sub: 'lc-legacy', scopes }) });
      const modern = await connect(gw, 'modern', { token: await gw.token({ sub: 'lc-modern', scopes }) });
      try {
        let legacyHeard = 0;
        let modernHeard = 0;
        legacy.setNotificationHandler('notifications/tools/list_changed', () => void legacyHeard++);
        modern.setNotificationHandler('notifications/tools/list_changed', () => void modernHeard++);
        const sub = await modern.listen({ toolsListChanged: true });
        const names = async () => (await modern.listTools()).tools.map((t) => t.name).filter((n) => n.startsWith('web.'));
        assert.ok(!(await names()).includes('web.extra'));
        assert.equal(((await legacy.callTool({ name: 'web.toggle', arguments: {} })).content as Array<{ text: string }>)[0]!.text, 'extra on');
        await eventually(() => legacyHeard > 0 && modernHeard > 0, 15_000);
        assert.ok((await names()).includes('web.extra'));
        assert.ok((await legacy.listTools()).tools.some((t) => t.name === 'web.extra'));
        await sub.close();
      } finally {
        await legacy.close();
        await modern.close();
      }
    });

    test("a 2025 agent subscribes to its resources (the gateway's own subscriptions/listen to it) and hears the update", async () => {
      const legacy = await connect(gw, 'legacy', { token: await gw.token({ sub: 'sub-modern', scopes: ['web:call'] }) });
      const got: string[] = [];
      legacy.setNotificationHandler('notifications/resources/updated', (n) => void got.push(n.params.uri));
      try {
        assert.deepEqual(await legacy.subscribeResource({ uri: 'echo://static/info' }), {});
        const r = await legacy.callTool({ name: 'web.touch', arguments: { uri: 'echo://static/info' } });
        assert.equal((r.content as Array<{ text: string }>)[0]!.text, 'updated echo://static/info');
        await eventually(() => got.length >= 1);
        assert.deepEqual(got, ['echo://static/info']);
        await legacy.unsubscribeResource({ uri: 'echo://static/info' });
      } finally {
        await legacy.close();
      }
    });
  });
}
