/**
 * Issue #11 point 4: many agents eliciting on one 2025 stdio service at once. The service names no
 * call when it asks; with `isolation: principal` each principal's calls go to its own connection
 * (its own process) from a bounded pool, so each question reaches exactly the agent whose call
 * caused it. Two, then twenty agents of different principals (SDK 2.x of both eras and SDK 1.x)
 * are all asked at once before anyone answers; an abandoned round blocks nobody.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { barrier, connect, echoService, elicitingAgents, eventually, type Gateway, modernPost, startGateway } from '../helpers/harness.js';

const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';

describe('relay: isolation per principal', () => {
  let gw: Gateway;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    gw = await startGateway({
      services: {
        iso: echoService({ era: 'legacy', isolation: 'principal', pool: { max: 24, idle_s: 600 } }),
        persession: echoService({ era: 'legacy', isolation: 'session', pool: { max: 4, idle_s: 600 } }),
      },
    });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });

  for (const n of [2, 20]) {
    // The timeout ends a run where the agents are not all asked at once (a shared connection refuses them).
    test(`${n} agents of different principals elicit at once: each question reaches its own agent, each answer its own call`, {
      timeout: 120_000,
    }, async () => {
      const all = await elicitingAgents(gw, n, `iso${n}`, 'iso', clients);
      const results = await Promise.all(all.map((a) => a.call()));
      const pids = new Set<string>();
      all.forEach((a, i) => {
        const t = text(results[i]!);
        assert.match(t, new RegExp(`^answer ${a.sub} \\(instance [0-9a-f-]{36}\\)$`), `${a.sub}: ${JSON.stringify(results[i])}`);
        pids.add(/instance ([0-9a-f-]+)/.exec(t)![1]!);
        assert.deepEqual(a.asked, ['Your name?'], `${a.sub} was asked exactly once`);
      });
      assert.equal(pids.size, n, 'one process per principal');
    });
  }

  test('an abandoned round blocks nobody: another principal is asked and answered meanwhile', async () => {
    // A 2026 agent is asked (input_required) and never answers: its call stays parked.
    const events = await modernPost(
      gw,
      await gw.token({ sub: 'abandoner', scopes: ['iso:call'] }),
      'tools/call',
      { name: 'iso.ask-name', arguments: {} },
      {
        capabilities: { elicitation: { form: {} } },
      },
    );
    const last = events.at(-1)!;
    assert.equal(last.result?.resultType, 'input_required', JSON.stringify(last));
    const [other] = await elicitingAgents(gw, 1, 'after-abandon', 'iso', clients);
    assert.match(text(await other!.call()), /^answer after-abandon-0 \(instance [0-9a-f-]{36}\)$/);
  });

  test("an abandoned round blocks none of the principal's own other agents: they take another connection of the principal's", async () => {
    const token = await gw.token({ sub: 'same-principal', scopes: ['iso:call'] });
    const events = await modernPost(gw, token, 'tools/call', { name: 'iso.ask-name', arguments: {} }, { capabilities: { elicitation: { form: {} } } });
    assert.equal(events.at(-1)!.result?.resultType, 'input_required', JSON.stringify(events.at(-1)));
    const c = await connect(gw, 'legacy', { token });
    clients.push(c);
    c.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { name: 'second' } }));
    assert.match(text(await c.callTool({ name: 'iso.ask-name', arguments: {} })), /^answer second \(instance [0-9a-f-]{36}\)$/);
  });

  test('isolation: session: two 2025 sessions of one principal each get their own connection, asked at once', { timeout: 120_000 }, async () => {
    const token = await gw.token({ sub: 'one-principal', scopes: ['persession:call'] });
    const gate = barrier(2);
    const sessions = await Promise.all(
      ['first', 'second'].map(async (name) => {
        const c = await connect(gw, 'legacy', { token });
        clients.push(c);
        c.setRequestHandler('elicitation/create', async () => {
          await gate.arrive();
          return { action: 'accept', content: { name } };
        });
        return { name, c };
      }),
    );
    const out = await Promise.all(sessions.map((s) => s.c.callTool({ name: 'persession.ask-name', arguments: {} })));
    const instances = out.map((r, i) => {
      const m = /^answer (\w+) \(instance ([0-9a-f-]{36})\)$/.exec(text(r));
      assert.ok(m, JSON.stringify(r));
      assert.equal(m[1], sessions[i]!.name);
      return m[2];
    });
    assert.notEqual(instances[0], instances[1], 'one connection per session');
  });

  test("isolation: session: a 2025 service learns exactly its agent's capabilities; shared by a principal, the gateway's", async () => {
    const token = await gw.token({ sub: 'caps-session', scopes: ['persession:call', 'iso:call'] });
    const none = await connect(gw, 'legacy', { token, capabilities: {} });
    const sampling = await connect(gw, 'legacy', { token, capabilities: { sampling: {}, roots: { listChanged: true } } });
    clients.push(none, sampling);
    assert.equal(text(await none.callTool({ name: 'persession.caps', arguments: {} })), '{}');
    assert.equal(text(await sampling.callTool({ name: 'persession.caps', arguments: {} })), '{"sampling":{}}');
    // The control: a connection a principal's sessions share declares what the gateway relays.
    assert.deepEqual(JSON.parse(text(await none.callTool({ name: 'iso.caps', arguments: {} }))), { elicitation: { form: {}, url: {} }, sampling: {} });
  });

  test("isolated subscriptions: each principal's connection holds its own; unsubscribing ends only that one", async () => {
    const uri = 'echo://static/info';
    const [p, q] = await Promise.all(
      ['sub-p', 'sub-q'].map(async (sub) => {
        const c = await connect(gw, 'legacy', { token: await gw.token({ sub, scopes: ['iso:call'] }) });
        clients.push(c);
        return c;
      }),
    );
    const touch = async (c: typeof p) => text(await c!.callTool({ name: 'iso.touch', arguments: { uri } }));
    await p!.subscribeResource({ uri });
    await q!.subscribeResource({ uri });
    assert.deepEqual([await touch(p), await touch(q)], [`updated ${uri}`, `updated ${uri}`]);
    await p!.unsubscribeResource({ uri });
    assert.equal(await touch(q), `updated ${uri}`, "Q's connection keeps its subscription");
    // The service's unsubscribe is sent as P's is answered: wait for it to land rather than race it.
    await eventually(async () => (await touch(p)) === `not subscribed ${uri}`);
  });
});
