/**
 * Issue #11 point 1, resources: subscriptions and their updates in every agent era x service era pair.
 * 2025 agents (SDK 1.x client) subscribe with resources/subscribe; 2026-07-28 agents (SDK 2.x client)
 * name resources in subscriptions/listen. Services: the echo fixture as a 2025 stdio service, as a
 * 2026-07-28 stdio service, and over Streamable HTTP as a 2026-07-28-only service and as a 2025 service
 * (stateful sessions) (real child processes).
 * Each subscription is decided by policy and audited; a refused one is left out (2025: the error;
 * 2026: the acknowledgement); an update reaches only subscribers who may read the URI; unsubscribing
 * or closing the stream ends delivery, and the service's own subscription ends with its last subscriber.
 * A service of either era that is restarted (shared or isolated connection) is subscribed again.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { type Client, type McpSubscription, SUBSCRIPTION_ID_META_KEY } from '@modelcontextprotocol/client';
import type { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { readRecords } from '../helpers/audit.js';
import { allReady, connect, connectV1, echoService, eventually, type Gateway, modernPost, startGateway, startHttpFixture } from '../helpers/harness.js';
import { copyPolicies } from '../helpers/policy.js';

const uriOf = (service: string) => `echo://${service}/info`;
const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';

/** Each service, its era, and a service of the other kind whose resource a forbidden principal may read. */
const SERVICES = [
  { name: 'legacyecho', era: '2025', other: 'modernecho' },
  { name: 'modernecho', era: '2026', other: 'legacyecho' },
  { name: 'webecho', era: '2026 HTTP', other: 'legacyecho' },
  { name: 'weblegecho', era: '2025 HTTP', other: 'modernecho' },
] as const;

/** One agent as the tests drive it, whatever its era. */
interface Agent {
  /** The URIs of the updates it received, in order. */
  got: string[];
  /** Every updated notification's params as received. */
  raw: Array<Record<string, unknown>>;
  /** Subscribes to `uris`: the ones granted (2025: each subscribe; 2026: one listen stream's ack) and the 2025 errors. */
  subscribe(uris: string[]): Promise<{ granted: string[]; errors: Array<{ code: number; message: string }>; stream?: McpSubscription }>;
  /** Ends the subscriptions of `sub` (2025: unsubscribes `uris`; 2026: closes the stream). */
  end(sub: { stream?: McpSubscription }, uris: string[]): Promise<void>;
  client: Client | ClientV1;
  close(): Promise<void>;
}

describe('resource subscriptions across agent and service eras', () => {
  let gw: Gateway;
  let web: { proc: ChildProcess; url: string };
  let weblegacy: { proc: ChildProcess; url: string };
  const open: Agent[] = [];

  before(async () => {
    web = await startHttpFixture({ modernOnly: true, uri: uriOf('webecho') });
    weblegacy = await startHttpFixture({ uri: uriOf('weblegecho') });
    gw = await startGateway({
      services: {
        legacyecho: echoService({ era: 'legacy' }, undefined, uriOf('legacyecho')),
        modernecho: echoService({ era: 'modern' }, undefined, uriOf('modernecho')),
        webecho: { transport: 'http', url: web.url, era: 'modern' },
        weblegecho: { transport: 'http', url: weblegacy.url, era: 'legacy' },
      },
    });
    await allReady(gw);
  });
  after(async () => {
    for (const a of open) await a.close().catch(() => undefined);
    await gw?.stop();
    web?.proc.kill();
    weblegacy?.proc.kill();
  });

  async function agent(era: '2025' | '2026', sub: string, scopes?: string[]): Promise<Agent> {
    const token = await gw.token({ sub, ...(scopes ? { scopes } : {}) });
    const got: string[] = [];
    const raw: Array<Record<string, unknown>> = [];
    let a: Agent;
    if (era === '2025') {
      const c = await connectV1(gw, { token });
      c.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
        raw.push(n.params);
        got.push(n.params.uri);
      });
      a = {
        got,
        raw,
        client: c,
        close: () => c.close(),
        async subscribe(uris) {
          const granted: string[] = [];
          const errors: Array<{ code: number; message: string }> = [];
          for (const uri of uris) {
            try {
              await c.subscribeResource({ uri });
              granted.push(uri);
            } catch (e) {
              assert.ok(e instanceof McpError, String(e));
              errors.push({ code: e.code, message: e.message });
            }
          }
          return { granted, errors };
        },
        async end(_s, uris) {
          for (const uri of uris) await c.unsubscribeResource({ uri });
        },
      };
    } else {
      const c = await connect(gw, 'modern', { token });
      c.setNotificationHandler('notifications/resources/updated', (n) => {
        raw.push(n.params as Record<string, unknown>);
        got.push(n.params.uri);
      });
      a = {
        got,
        raw,
        client: c,
        close: () => c.close(),
        async subscribe(uris) {
          const stream = await c.listen({ resourceSubscriptions: uris });
          return { granted: stream.honoredFilter.resourceSubscriptions ?? [], errors: [], stream };
        },
        async end(s) {
          await s.stream?.close();
        },
      };
    }
    open.push(a);
    return a;
  }

  const touch = async (who: Agent, service: string) =>
    text(await (who.client as Client).callTool({ name: `${service}.touch`, arguments: { uri: uriOf(service) } }));

  const readyz = async () =>
    ((await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; resource_subscriptions?: number }> }).services;

  const decisions = (sub: string) =>
    readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec)
      .filter((r) => r.kind === 'decision' && (r.principal as { id?: string } | undefined)?.id === sub)
      .map((r) => ({
        method: r.method,
        service: r.service,
        allow: (r.result as { allow?: boolean }).allow,
        // Both engines give their reasons: each id once.
        reasons: [...new Set(((r.result as { reasons?: Array<{ id: string }> }).reasons ?? []).map((x) => x.id))],
      }));

  const refusals = (sub: string) =>
    readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec)
      .filter((r) => r.kind === 'event' && r.type === 'probe_refused' && (r.principal as { id?: string } | undefined)?.id === sub)
      .map((r) => ({ method: r.method, ...(r.error as { code: string; message: string }) }));

  test('a 2026 listen: an unknown URI and the URIs past the cap (100) are left out, each refusal recorded', async () => {
    const X = uriOf('modernecho');
    const unknown = Array.from({ length: 99 }, (_, i) => `echo://nowhere/${i}`);
    const a = await agent('2026', 'sub-cap', ['modernecho:call', 'legacyecho:call']);
    // 101 URIs (one twice, counted once): X, 99 unknown, then legacyecho's, the 101st, past the cap.
    const s = await a.subscribe([X, ...unknown, X, uriOf('legacyecho')]);
    assert.deepEqual(s.stream?.honoredFilter, { resourceSubscriptions: [X] });
    await eventually(() => refusals('sub-cap').some((x) => x.code === 'ERR_RESOURCE_NOT_FOUND'));
    const got = refusals('sub-cap');
    assert.deepEqual(got[0], {
      method: 'subscriptions/listen',
      code: 'ERR_SUBSCRIPTIONS_EXCEEDED',
      message: 'too many resource subscriptions on this stream (at most 100); 1 left out',
    });
    assert.deepEqual(got[1], { method: 'resources/subscribe', code: 'ERR_RESOURCE_NOT_FOUND', message: 'Resource not found: echo://nowhere/0' });
    // The granted one works.
    assert.equal(await touch(a, 'modernecho'), `updated ${X}`);
    await eventually(() => a.got.length >= 1);
    assert.deepEqual(a.got, [X]);
    await a.end(s, []);
  });

  test('a 2026 listen whose resourceSubscriptions is not a list of strings: -32602, recorded, nothing subscribed', async () => {
    const t = await gw.token({ sub: 'sub-malformed' });
    const [answer] = await modernPost(gw, t, 'subscriptions/listen', { notifications: { resourceSubscriptions: [uriOf('modernecho'), 7] } });
    assert.deepEqual(answer, {
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32602, message: 'Invalid params: notifications.resourceSubscriptions must be a list of resource URIs (strings)' },
    });
    const got = await eventually(() => refusals('sub-malformed')[0]);
    assert.deepEqual(got, {
      method: 'subscriptions/listen',
      code: 'ERR_BAD_REQUEST',
      message: 'Invalid params: notifications.resourceSubscriptions must be a list of resource URIs (strings)',
    });
    assert.deepEqual(decisions('sub-malformed'), []);
  });

  test("a 2026 service that crashes and is restarted: the gateway subscribes again, its agents' subscriptions hold", async () => {
    const X = uriOf('modernecho');
    const a = await agent('2026', 'sub-restart', ['modernecho:call']);
    const s = await a.subscribe([X]);
    assert.deepEqual(s.granted, [X]);
    const restarts = async () =>
      (await readyz()).find((x) => x.name === 'modernecho') as { restarts?: number; state?: string; resource_subscriptions?: number };
    const before = (await restarts()).restarts ?? 0;
    assert.equal(await touch(a, 'modernecho'), `updated ${X}`);
    await eventually(() => a.got.length >= 1);
    await (a.client as Client).callTool({ name: 'modernecho.crash', arguments: {} }).catch(() => undefined);
    await eventually(async () => {
      const r = await restarts();
      return (r.restarts ?? 0) > before && r.state === 'ready';
    }, 30_000);
    // The new process knows of no subscription until the gateway listens again: an update that arrives proves it did.
    await eventually(async () => {
      await touch(a, 'modernecho');
      return a.got.length >= 2;
    }, 15_000);
    assert.deepEqual(a.got.slice(0, 2), [X, X]);
    assert.equal((await restarts()).resource_subscriptions, 1);
    await a.end(s, []);
  });

  test("a 2025 service that crashes and is restarted: the gateway subscribes again, its 2025 agent's subscription holds", async () => {
    const X = uriOf('legacyecho');
    const a = await agent('2025', 'sub-restart-2025', ['legacyecho:call']);
    const s = await a.subscribe([X]);
    assert.deepEqual([s.granted, s.errors], [[X], []]);
    const restarts = async () => (await readyz()).find((x) => x.name === 'legacyecho') as { restarts?: number; state?: string };
    const before = (await restarts()).restarts ?? 0;
    assert.equal(await touch(a, 'legacyecho'), `updated ${X}`);
    await eventually(() => a.got.length >= 1);
    await (a.client as Client).callTool({ name: 'legacyecho.crash', arguments: {} }).catch(() => undefined);
    await eventually(async () => {
      const r = await restarts();
      return (r.restarts ?? 0) > before && r.state === 'ready';
    }, 30_000);
    // The new process answers "not subscribed" until the gateway subscribes again; the agent never does.
    await eventually(async () => (await touch(a, 'legacyecho')) === `updated ${X}`, 15_000);
    await eventually(() => a.got.length >= 2);
    assert.deepEqual(a.raw, [{ uri: X }, { uri: X }]);
    // Its unsubscribe ends it at the new process too.
    await a.end(s, [X]);
    assert.equal(await touch(a, 'legacyecho'), `not subscribed ${X}`);
  });

  test('twenty agents of both eras subscribe at once to two 2026 services: each update reaches each of them exactly once', async () => {
    const X = uriOf('modernecho');
    const Y = uriOf('webecho');
    const scopes = ['modernecho:call', 'webecho:call'];
    const agents = await Promise.all(Array.from({ length: 20 }, (_, i) => agent(i % 2 === 0 ? '2025' : '2026', `crowd-${i}`, scopes)));
    const subs = await Promise.all(agents.map((a) => a.subscribe([X, Y])));
    assert.deepEqual(
      subs.map((s) => s.granted),
      agents.map(() => [X, Y]),
    );
    const health = async () => (await readyz()).filter((s) => s.name === 'modernecho' || s.name === 'webecho').map((s) => [s.name, s.resource_subscriptions]);
    assert.deepEqual(await health(), [
      ['modernecho', 1],
      ['webecho', 1],
    ]);
    assert.equal(await touch(agents[0]!, 'modernecho'), `updated ${X}`);
    await eventually(() => agents.every((a) => a.got.length >= 1));
    // A duplicate of X would come before Y.
    assert.equal(await touch(agents[0]!, 'webecho'), `updated ${Y}`);
    await eventually(() => agents.every((a) => a.got.length >= 2));
    assert.deepEqual(
      agents.map((a) => a.got),
      agents.map(() => [X, Y]),
    );
    await Promise.all(agents.map((a, i) => a.end(subs[i]!, [X, Y])));
    await eventually(
      async () =>
        JSON.stringify(await health()) ===
        JSON.stringify([
          ['modernecho', 0],
          ['webecho', 0],
        ]),
    );
  });

  for (const agentEra of ['2025', '2026'] as const) {
    for (const svc of SERVICES) {
      test(`${agentEra} agent x ${svc.era} service: decided, delivered only to who may read it, ended by ${agentEra === '2025' ? 'unsubscribe' : 'closing the stream'}`, async () => {
        const X = uriOf(svc.name);
        const Y = uriOf(svc.other);
        const tag = `${agentEra}-${svc.name}`;
        // A may read both resources; P only the other service's (scope <namespace>:call).
        const a = await agent(
          agentEra,
          `sub-a-${tag}`,
          SERVICES.map((s) => `${s.name}:call`),
        );
        const p = await agent(agentEra, `sub-p-${tag}`, [`${svc.other}:call`]);

        // A: X and Y on separate subscriptions (2026: separate streams), so X can end while Y stays.
        const ax = await a.subscribe([X]);
        const ay = await a.subscribe([Y]);
        assert.deepEqual(
          [ax, ay].map((s) => [s.granted, s.errors]),
          [
            [[X], []],
            [[Y], []],
          ],
        );
        const ps = await p.subscribe([X, Y]);
        assert.deepEqual(ps.granted, [Y], 'the forbidden URI is left out');
        if (agentEra === '2025') assert.deepEqual(ps.errors, [{ code: -32003, message: 'MCP error -32003: denied by policy: service_content_scope_missing' }]);
        else assert.deepEqual(ps.stream?.honoredFilter, { resourceSubscriptions: [Y] });

        // Every subscription decided by policy and recorded; P's to X denied.
        assert.deepEqual(decisions(`sub-p-${tag}`), [
          { method: 'resources/subscribe', service: svc.name, allow: false, reasons: ['service_content_scope_missing'] },
          { method: 'resources/subscribe', service: svc.other, allow: true, reasons: ['service_content_scope'] },
        ]);
        assert.deepEqual(
          decisions(`sub-a-${tag}`).map((d) => [d.service, d.allow]),
          [
            [svc.name, true],
            [svc.other, true],
          ],
        );

        // An update to X reaches A (exactly), then one to Y reaches both: P's first is Y, so X never reached it.
        assert.equal(await touch(a, svc.name), `updated ${X}`);
        await eventually(() => a.got.length >= 1);
        assert.equal(await touch(a, svc.other), `updated ${Y}`);
        await eventually(() => a.got.length >= 2 && p.got.length >= 1);
        assert.deepEqual(a.got, [X, Y]);
        assert.deepEqual(p.got, [Y]);
        if (agentEra === '2025') assert.deepEqual(a.raw[0], { uri: X });
        else {
          assert.deepEqual(Object.keys(a.raw[0]!).sort(), ['_meta', 'uri']);
          assert.deepEqual(Object.keys(a.raw[0]!._meta as object), [SUBSCRIPTION_ID_META_KEY]);
        }

        // A ends its subscription to X; it was X's only subscriber, so the gateway's at the service ends too.
        await a.end(ax, [X]);
        if (svc.era.startsWith('2025')) await eventually(async () => (await touch(a, svc.name)) === `not subscribed ${X}`);
        else await eventually(async () => (await readyz()).find((s) => s.name === svc.name)?.resource_subscriptions === 0);
        assert.equal(await touch(a, svc.name), svc.era.startsWith('2025') ? `not subscribed ${X}` : `updated ${X}`);
        assert.equal(await touch(a, svc.other), `updated ${Y}`);
        await eventually(() => a.got.length >= 3 && p.got.length >= 2);
        assert.deepEqual(a.got, [X, Y, Y], 'nothing of X after the subscription ended');
        assert.deepEqual(p.got, [Y, Y]);
        await a.end(ay, [Y]);
        await p.end(ps, [Y]);
      });
    }
  }
});

describe('an update is delivered only if its subscriber may read the URI when it arrives', () => {
  let gw: Gateway;
  let policies: ReturnType<typeof copyPolicies>;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    policies = copyPolicies();
    gw = await startGateway({
      services: {
        legacyecho: echoService({ era: 'legacy' }, undefined, uriOf('legacyecho')),
        modernecho: echoService({ era: 'modern' }, undefined, uriOf('modernecho')),
      },
      policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar }, watch: true },
    });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
    if (policies) rmSync(policies.dir, { recursive: true, force: true });
  });

  test('a granted subscription (2025 and 2026 agent) whose read is revoked later: the update is not delivered', async () => {
    const X = uriOf('modernecho');
    const Y = uriOf('legacyecho');
    const scopes = ['modernecho:call', 'legacyecho:call'];
    const got = { control: [] as string[], v1: [] as string[], v2: [] as string[] };
    const control = await connect(gw, 'modern', { token: await gw.token({ sub: 'control', scopes }) });
    const v2 = await connect(gw, 'modern', { token: await gw.token({ sub: 'revoked', scopes }) });
    const v1 = await connectV1(gw, { token: await gw.token({ sub: 'revoked', scopes }) });
    clients.push(control, v2, v1);
    control.setNotificationHandler('notifications/resources/updated', (n) => void got.control.push(n.params.uri));
    v2.setNotificationHandler('notifications/resources/updated', (n) => void got.v2.push(n.params.uri));
    v1.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void got.v1.push(n.params.uri));
    const cs = await control.listen({ resourceSubscriptions: [X] });
    const s2 = await v2.listen({ resourceSubscriptions: [X, Y] });
    assert.deepEqual(s2.honoredFilter, { resourceSubscriptions: [X, Y] });
    await v1.subscribeResource({ uri: X });
    await v1.subscribeResource({ uri: Y });

    // Delivered while the policy lets the principal read X.
    await control.callTool({ name: 'modernecho.touch', arguments: { uri: X } });
    await eventually(() => got.control.length >= 1 && got.v1.length >= 1 && got.v2.length >= 1);
    assert.deepEqual([got.control, got.v1, got.v2], [[X], [X], [X]]);

    // The policy now denies this principal the service's resources (Rego only); reloaded while subscribed.
    const reloads = () => (gw.output().match(/"msg":"policy set reloaded"/g) ?? []).length;
    const n = reloads();
    writeFileSync(
      path.join(policies.rego, 'zz_revoked.rego'),
      [
        'package micro_mcp.authz',
        '',
        '_denies contains "test_revoked: this principal lost the resources of modernecho" if {',
        '\t_content_method',
        '\tinput.tool.namespace == "modernecho"',
        '\tinput.principal.id == "revoked"',
        '}',
        '',
      ].join('\n'),
    );
    await eventually(() => reloads() > n, 15_000);

    // X changes: the control hears it; then Y changes: the revoked principal's first update is Y, never X.
    await control.callTool({ name: 'modernecho.touch', arguments: { uri: X } });
    await eventually(() => got.control.length >= 2);
    await control.callTool({ name: 'legacyecho.touch', arguments: { uri: Y } });
    await eventually(() => got.v1.length >= 2 && got.v2.length >= 2);
    assert.deepEqual(
      [got.control, got.v1, got.v2],
      [
        [X, X],
        [X, Y],
        [X, Y],
      ],
    );
    await cs.close();
    await s2.close();
  });
});

describe('a listen stream whose agent goes away while its URIs are decided', () => {
  let gw: Gateway;
  let web: { proc: ChildProcess; url: string };
  before(async () => {
    web = await startHttpFixture({ modernOnly: true, uri: uriOf('slowweb') });
    gw = await startGateway({
      services: {
        slowweb: { transport: 'http', url: web.url, era: 'modern', call_timeout_ms: 2000 },
        modernecho: echoService({ era: 'modern' }, undefined, uriOf('modernecho')),
        legacyecho: echoService({ era: 'legacy' }, undefined, uriOf('legacyecho')),
      },
    });
  });
  after(async () => {
    web?.proc.kill('SIGCONT');
    web?.proc.kill();
    await gw?.stop();
  });

  test("the last subscriber's unsubscribe while another's subscribe is in flight: the service keeps the subscription", async () => {
    const L = uriOf('legacyecho');
    const scopes = ['legacyecho:call'];
    const a = await connect(gw, 'legacy', { token: await gw.token({ sub: 'race-a', scopes }) });
    const b = await connect(gw, 'legacy', { token: await gw.token({ sub: 'race-b', scopes }) });
    const got: string[] = [];
    b.setNotificationHandler('notifications/resources/updated', (n) => void got.push(n.params.uri));
    const hold = new AbortController();
    try {
      await a.subscribeResource({ uri: L });
      // The service answers B's subscribe (already made there) only when the held call ends; meanwhile A,
      // L's only subscriber, unsubscribes: sent to the service then, it would land after B's subscribe.
      const holding = b.callTool({ name: 'legacyecho.slow', arguments: { tag: 'hold-subscribe' } }, { signal: hold.signal }).catch(() => undefined);
      await eventually(() =>
        readRecords(path.join(gw.dir, 'audit')).some(
          (l) => l.rec.kind === 'decision' && l.rec.tool === 'legacyecho.slow' && (l.rec.principal as { id?: string }).id === 'race-b',
        ),
      );
      const subscribing = b.subscribeResource({ uri: L });
      await eventually(() =>
        readRecords(path.join(gw.dir, 'audit')).some(
          (l) => l.rec.kind === 'decision' && l.rec.method === 'resources/subscribe' && (l.rec.principal as { id?: string }).id === 'race-b',
        ),
      );
      assert.deepEqual(await a.unsubscribeResource({ uri: L }), {});
      hold.abort();
      await holding;
      assert.deepEqual(await subscribing, {});
      // The service still holds L for B: the update is sent and reaches B.
      assert.equal(text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri: L } })), `updated ${L}`);
      await eventually(() => got.length >= 1);
      assert.deepEqual(got, [L]);
      await b.unsubscribeResource({ uri: L });
      await eventually(async () => text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri: L } })) === `not subscribed ${L}`);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('what it was granted is dropped, and the URIs after are never decided', async () => {
    const audit = () => readRecords(path.join(gw.dir, 'audit')).map((l) => l.rec);
    const health = async () =>
      (await (await fetch(`${gw.url}/readyz`)).json()) as { streams: number; services: Array<{ name: string; resource_subscriptions?: number }> };
    const c = await connect(gw, 'modern', {
      token: await gw.token({ sub: 'sub-gone', scopes: ['slowweb:call', 'modernecho:call', 'legacyecho:call'] }),
    });
    try {
      // The HTTP service stops answering: subscribing to its URI waits out its call timeout (2 s).
      web.proc.kill('SIGSTOP');
      const ac = new AbortController();
      const listening = c
        .listen({ resourceSubscriptions: [uriOf('modernecho'), uriOf('slowweb'), uriOf('legacyecho')] }, { signal: ac.signal })
        .catch((e: unknown) => e);
      // modernecho's is granted and made; slowweb's decided, waiting on the service: the agent goes away.
      await eventually(() => audit().some((r) => r.kind === 'decision' && r.service === 'slowweb' && (r.principal as { id?: string }).id === 'sub-gone'));
      assert.equal((await health()).services.find((s) => s.name === 'modernecho')?.resource_subscriptions, 1);
      ac.abort();
      assert.ok((await listening) instanceof Error);
      // The listen ends once slowweb's subscribe has timed out (its place among the streams given back).
      await eventually(async () => (await health()).streams === 0, 15_000);
      assert.equal(
        audit().some((r) => r.kind === 'decision' && r.service === 'legacyecho' && (r.principal as { id?: string }).id === 'sub-gone'),
        false,
        'the URI after the agent left was never decided',
      );
      await eventually(async () => (await health()).services.find((s) => s.name === 'modernecho')?.resource_subscriptions === 0);
    } finally {
      web.proc.kill('SIGCONT');
      await c.close();
    }
  });
});

describe('a 2025 service isolated per principal: its restarted connection is subscribed again', () => {
  let gw: Gateway;
  const X = uriOf('isoecho');

  before(async () => {
    gw = await startGateway({
      services: { isoecho: echoService({ era: 'legacy', isolation: 'principal', pool: { max: 4, idle_s: 600 } }, undefined, X) },
    });
    await allReady(gw);
  });
  after(async () => {
    await gw?.stop();
  });

  test("the principal's own process crashes and is restarted: a touch after it reaches the subscriber, who never subscribed again", async () => {
    const c = await connectV1(gw, { token: await gw.token({ sub: 'iso-sub', scopes: ['isoecho:call'] }) });
    const got: Array<Record<string, unknown>> = [];
    c.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      got.push(n.params);
    });
    const touch = async () => {
      const r = await c.callTool({ name: 'isoecho.touch', arguments: { uri: X } });
      return text(r);
    };
    // The principal's pooled connection logs each process it connects to.
    const pooledReady = () =>
      gw
        .output()
        .split('\n')
        .filter((l) => l.includes('"pooled"') && l.includes('"msg":"service ready"')).length;
    await c.subscribeResource({ uri: X });
    assert.equal(await touch(), `updated ${X}`);
    await eventually(() => got.length >= 1);
    assert.equal(pooledReady(), 1);
    await c.callTool({ name: 'isoecho.crash', arguments: {} });
    // Restarted: the new process answers "not subscribed" until the gateway subscribes again.
    await eventually(() => pooledReady() === 2, 30_000);
    await eventually(async () => (await touch()) === `updated ${X}`, 15_000);
    await eventually(() => got.length >= 2);
    assert.deepEqual(got, [{ uri: X }, { uri: X }]);
    await c.close();
  });
});

describe('a 2025 service that refuses the subscription again after a restart', () => {
  let gw: Gateway;
  let marker: string;
  const X = uriOf('flaky');

  before(async () => {
    marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-flaky-')), 'marker');
    const flaky = echoService({ era: 'legacy' }, marker, X);
    // Its second process refuses every resources/subscribe; the first and third take them.
    flaky.args = [...(flaky.args as string[]), '--refuse-subscribe-start', '2'];
    gw = await startGateway({ services: { flaky } });
    await allReady(gw);
  });
  after(async () => {
    await gw?.stop();
    rmSync(path.dirname(marker), { recursive: true, force: true });
  });

  test('the failure is logged without the URI, and the next reconnect subscribes again', async () => {
    const c = await connectV1(gw, { token: await gw.token({ sub: 'flaky-sub', scopes: ['flaky:call'] }) });
    const got: Array<Record<string, unknown>> = [];
    c.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      got.push(n.params);
    });
    const touch = async () => text(await c.callTool({ name: 'flaky.touch', arguments: { uri: X } }));
    const restarted = async (n: number) =>
      eventually(async () => {
        const r = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ restarts: number; state: string }> };
        return r.services[0]?.restarts === n && r.services[0].state === 'ready';
      }, 30_000);
    const failures = () =>
      gw
        .output()
        .split('\n')
        .filter((l) => l.includes('resubscribing to resources failed'));
    await c.subscribeResource({ uri: X });
    assert.equal(await touch(), `updated ${X}`);
    await eventually(() => got.length >= 1);

    // The second process refuses: logged once (how many, why; not which URI), and it holds no subscription.
    await c.callTool({ name: 'flaky.crash', arguments: {} });
    await restarted(1);
    await eventually(() => failures().length === 1, 15_000);
    const [line] = failures();
    assert.match(line!, /"service":"flaky"/);
    assert.match(line!, /"failed":1/);
    assert.match(line!, /this process refuses subscriptions/);
    assert.equal(line!.includes(X), false, 'the log line names no URI');
    assert.equal(await touch(), `not subscribed ${X}`);

    // The next reconnect tries again, and the third process takes it: the agent never subscribed again.
    await c.callTool({ name: 'flaky.crash', arguments: {} });
    await restarted(2);
    await eventually(async () => (await touch()) === `updated ${X}`, 15_000);
    await eventually(() => got.length >= 2);
    assert.deepEqual(got, [{ uri: X }, { uri: X }]);
    assert.equal(failures().length, 1);
    await c.close();
  });
});
