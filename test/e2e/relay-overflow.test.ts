/**
 * Issue #11 point 4, default config: an abandoned input round never blocks anyone else. A 2025 stdio
 * service names no call when it asks; on its shared connection a question is attributed only when one
 * call is in flight there. While a call waits for its agent's answer, that connection takes no new
 * calls: they overflow to other connections (processes) of the service, and a tool that has asked gets
 * one to itself, so ten agents are asked at once while an abandoned round waits (upstream/overflow).
 * The same for a 2025 HTTP service: the overflow connection is another session.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { readRecords } from '../helpers/audit.js';
import { parseMetrics, series } from '../helpers/metrics.js';
import { allReady, connect, echoService, elicitingAgents, eventually, type Gateway, modernPost, startGateway, startHttpFixture } from '../helpers/harness.js';
import { fileLine } from '../helpers/watch.js';

const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';
const ANSWER = /^answer (\S+) \(instance ([0-9a-f-]{36})\)$/;

describe('relay: overflow connections of a shared 2025 service', () => {
  let gw: Gateway;
  const marker = path.join(mkdtempSync(path.join(tmpdir(), 'overflow-')), 'marker');
  const clients: Array<{ close(): Promise<void> }> = [];
  /** Releases the 2025 agents that never answer (at the end, so their sessions close cleanly). */
  const hanging: Array<() => void> = [];
  before(async () => {
    gw = await startGateway({
      services: {
        shared: echoService({ era: 'legacy' }),
        bounded: echoService({ era: 'legacy', overflow: { max: 1 } }),
        off: echoService({ era: 'legacy', overflow: { max: 0 } }),
        prompted: echoService({ era: 'legacy' }, marker),
        restarting: echoService({ era: 'legacy', overflow: { max: 1 } }, marker),
      },
      metrics: { listen: '127.0.0.1:0' },
    });
  });
  after(async () => {
    for (const h of hanging) h();
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
  });

  /** A 2026 agent asked for input (input_required) that never retries: its call stays parked at the service. */
  async function abandon(sub: string, service: string): Promise<void> {
    const token = await gw.token({ sub, scopes: [`${service}:call`] });
    const events = await modernPost(gw, token, 'tools/call', { name: `${service}.ask-name`, arguments: {} }, { capabilities: { elicitation: { form: {} } } });
    const last = events.at(-1)!;
    assert.equal(last.result?.resultType, 'input_required', JSON.stringify(last));
    assert.equal(Object.values(last.result.inputRequests as Record<string, { params: { message: string } }>)[0]!.params.message, 'Your name?');
  }

  /** A 2025 agent whose handler takes the question and never answers; resolves once it was asked. */
  async function neverAnswers(sub: string, service: string): Promise<void> {
    const c = await connect(gw, 'legacy', { token: await gw.token({ sub, scopes: [`${service}:call`] }) });
    clients.push(c);
    let asked!: () => void;
    const wasAsked = new Promise<void>((r) => (asked = r));
    c.setRequestHandler('elicitation/create', () => {
      asked();
      return new Promise((resolve) => hanging.push(() => resolve({ action: 'cancel' })));
    });
    void c.callTool({ name: `${service}.ask-name`, arguments: {} }).catch(() => undefined);
    await wasAsked;
  }

  /** n agents call the eliciting tool at once: each is asked exactly once and gets its own answer's result. */
  async function atOnce(n: number, tag: string, service = 'shared'): Promise<Set<string>> {
    const all = await elicitingAgents(gw, n, tag, service, clients);
    const results = await Promise.all(all.map((a) => a.call()));
    const instances = new Set<string>();
    all.forEach((a, i) => {
      const m = ANSWER.exec(text(results[i]!));
      assert.ok(m, `${a.sub}: ${JSON.stringify(results[i])}`);
      assert.equal(m[1], a.sub);
      assert.deepEqual(a.asked, ['Your name?'], `${a.sub} was asked exactly once`);
      instances.add(m[2]!);
    });
    return instances;
  }

  const readyz = async () =>
    (
      (await (await fetch(`${gw.url}/readyz`)).json()) as {
        services: Array<{ name: string; restarts: number; state: string; connections?: Record<string, number> }>;
      }
    ).services;

  test('a 2026 agent abandons its round: ten agents of other principals are asked at once meanwhile, each on its own connection', {
    timeout: 120_000,
  }, async () => {
    await abandon('abandoner', 'shared');
    const instances = await atOnce(10, 'after-2026');
    assert.equal(instances.size, 10, 'all ten asked at once, so each on a connection of its own');
    // The main connection still waits for the abandoner: the ten ran on ten overflow connections.
    assert.deepEqual((await readyz()).find((x) => x.name === 'shared')?.connections, { overflow: 10 });
    const url = /micro-mcp metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(gw.output())![1]!;
    const m = parseMetrics(await (await fetch(url)).text());
    assert.equal(m.get(series('micro_mcp_service_connections', { service: 'shared', kind: 'overflow' })), 10);
    assert.equal(m.get(series('micro_mcp_service_connections', { service: 'off', kind: 'overflow' })), undefined, 'overflow off: none counted');
  });

  test("while a round waits, another agent's call on the service still gets its log messages (they are attributable on its connection)", async () => {
    const c = await connect(gw, 'legacy', { token: await gw.token({ sub: 'logger', scopes: ['shared:call'] }) });
    clients.push(c);
    const got: unknown[] = [];
    c.setNotificationHandler('notifications/message', (n) => void got.push(n.params));
    assert.equal(text(await c.callTool({ name: 'shared.log', arguments: { tag: 'mine' } })), 'logged mine');
    await eventually(() => got.length >= 4);
    assert.deepEqual(
      got,
      ['debug', 'info', 'warning', 'error'].map((level) => ({ level, logger: 'echo', data: `mine ${level}` })),
    );
  });

  test('a 2025 agent never answers: ten agents of other principals are asked at once meanwhile', { timeout: 120_000 }, async () => {
    await neverAnswers('silent', 'shared');
    const instances = await atOnce(10, 'after-2025');
    assert.equal(instances.size, 10);
    // Two connections wait (the abandoner's and the silent agent's): one more overflow connection than before.
    assert.deepEqual((await readyz()).find((x) => x.name === 'shared')?.connections, { overflow: 11 });
  });

  test('overflow.max reached and every connection waiting: the exact refusal, audited', async () => {
    await abandon('bounded-a', 'bounded');
    await abandon('bounded-b', 'bounded');
    const token = await gw.token({ sub: 'bounded-c', scopes: ['bounded:call'] });
    const [res] = await modernPost(gw, token, 'tools/call', { name: 'bounded.ask-name', arguments: {} }, { capabilities: { elicitation: { form: {} } } });
    const message = 'service "bounded": all 2 connections are waiting for agents to answer input requests (overflow.max 1); retry shortly';
    assert.equal(res!.error?.code, -32004, JSON.stringify(res));
    assert.equal(res!.error?.message, message);
    const outcomes = readRecords(path.join(gw.dir, 'audit'))
      .map((l) => l.rec)
      .filter((r) => r.kind === 'outcome' && (r.error as { message?: string } | undefined)?.message === message);
    assert.equal(outcomes.length, 1);
    assert.deepEqual(outcomes[0]!.error, { code: 'ERR_SERVICE_UNAVAILABLE', message });
  });

  test("overflow.max 0: today's behaviour, the question behind an abandoned round cannot be attributed and is refused", async () => {
    await abandon('off-a', 'off');
    const c = await connect(gw, 'legacy', { token: await gw.token({ sub: 'off-b', scopes: ['off:call'] }) });
    clients.push(c);
    let asked = 0;
    c.setRequestHandler('elicitation/create', async () => (asked++, { action: 'accept', content: { name: 'off-b' } }));
    const r = await c.callTool({ name: 'off.ask-name', arguments: {} });
    assert.equal(r.isError, true, JSON.stringify(r));
    assert.deepEqual(r.content, [
      {
        type: 'text',
        text: "Fulfilling input required by 'tools/call' failed: elicitation/create refused by the gateway: it cannot be attributed to exactly one call in progress",
      },
    ]);
    assert.equal(asked, 0, 'no agent was asked');
    assert.equal((await readyz()).find((x) => x.name === 'off')?.connections, undefined);
  });

  test("a prompt's question while a tool call is in flight cannot be attributed: refused, never put to the tool call's agent", async () => {
    const a = await connect(gw, 'legacy', { token: await gw.token({ sub: 'prompted-a', scopes: ['prompted:call'] }) });
    const b = await connect(gw, 'legacy', { token: await gw.token({ sub: 'prompted-b', scopes: ['prompted:call'] }) });
    clients.push(a, b);
    const asked: string[] = [];
    for (const [who, c] of [
      ['a', a],
      ['b', b],
    ] as const)
      c.setRequestHandler(
        'elicitation/create',
        async (req) => (asked.push(`${who}: ${(req.params as { message: string }).message}`), { action: 'accept', content: { name: who } }),
      );
    const ac = new AbortController();
    const slow = a.callTool({ name: 'prompted.slow', arguments: { tag: 'prompted', ms: 20_000 } }, { signal: ac.signal }).catch(() => undefined);
    await fileLine(marker, 'started prompted');
    // Both on the main connection (neither has asked before): the service's question names neither call.
    const e = await b.getPrompt({ name: 'prompted.ask' }).then(
      (r) => assert.fail(JSON.stringify(r)),
      (err: Error & { code?: number }) => ({ code: err.code, message: err.message }),
    );
    // The gateway refuses the question to the service, whose SDK fails the prompt with it.
    assert.deepEqual(e, {
      code: -32603,
      message:
        "Fulfilling input required by 'prompts/get' failed: elicitation/create refused by the gateway: it cannot be attributed to exactly one call in progress",
    });
    assert.deepEqual(asked, [], 'nobody was asked');
    ac.abort();
    await slow;
  });

  test("a 2025 service's question while it builds a prompt reaches the prompt's agent, of either era, and the answer builds it", async () => {
    // 2025 agent: asked on its session, its answer goes back to the service.
    const b = await connect(gw, 'legacy', { token: await gw.token({ sub: 'prompt-legacy', scopes: ['prompted:call'] }) });
    clients.push(b);
    const asked: string[] = [];
    b.setRequestHandler('elicitation/create', async (req) => {
      asked.push((req.params as { message: string }).message);
      return { action: 'accept', content: { name: 'Ada' } };
    });
    assert.deepEqual(await b.getPrompt({ name: 'prompted.ask' }), {
      messages: [{ role: 'user', content: { type: 'text', text: 'Hello Ada (state ask-round-1)' } }],
    });
    assert.deepEqual(asked, ['Whom to greet?']);
    // 2026 agent: an input_required round, then its retry with the answer.
    const token = await gw.token({ sub: 'prompt-modern', scopes: ['prompted:call'] });
    const caps = { capabilities: { elicitation: { form: {} } } };
    const first = (await modernPost(gw, token, 'prompts/get', { name: 'prompted.ask' }, caps)).at(-1)!;
    assert.equal(first.result?.resultType, 'input_required', JSON.stringify(first));
    const [[key, req]] = Object.entries(first.result.inputRequests as Record<string, { method: string; params: { message: string } }>);
    assert.deepEqual([req!.method, req!.params.message], ['elicitation/create', 'Whom to greet?']);
    const answer = { [key!]: { action: 'accept', content: { name: 'Grace' } } };
    // The parked prompt's state does not resume a tool call of the same name: refused, the prompt still waits.
    const astool = { name: 'prompted.ask', arguments: {}, inputResponses: answer, requestState: first.result.requestState };
    const refused = (await modernPost(gw, token, 'tools/call', astool, caps)).at(-1)!;
    assert.deepEqual(refused.error, {
      code: -32602,
      message: 'the input request has expired or belongs to another caller',
      data: { code: 'ERR_INPUT_STATE_INVALID' },
    });
    const retry = { name: 'prompted.ask', inputResponses: answer, requestState: first.result.requestState };
    const done = (await modernPost(gw, token, 'prompts/get', retry, caps)).at(-1)!;
    assert.deepEqual(done.result?.messages, [{ role: 'user', content: { type: 'text', text: 'Hello Grace (state ask-round-1)' } }], JSON.stringify(done));
  });

  test('a service that dies while its connection waits for an agent waits for nobody once restarted', async () => {
    await abandon('restarting-a', 'restarting');
    const health = async () => (await readyz()).find((x) => x.name === 'restarting')!;
    // The main connection's process (sandbox none: the service itself), from its "service ready" line.
    const ready = gw
      .output()
      .split('\n')
      .filter((l) => l.includes('"service ready"') && l.includes('"service":"restarting"') && !l.includes('"overflow"'))
      .map((l) => JSON.parse(l) as { pid: number });
    assert.equal(ready.length, 1);
    process.kill(ready[0]!.pid, 'SIGKILL');
    await eventually(async () => {
      const h = await health();
      return h.restarts === 1 && h.state === 'ready';
    });
    const c = await connect(gw, 'legacy', { token: await gw.token({ sub: 'restarting-b', scopes: ['restarting:call'] }) });
    clients.push(c);
    assert.equal(text(await c.callTool({ name: 'restarting.echo', arguments: { text: 'main again' } })), 'main again');
    // Had the main connection still counted the dead process's question, the call would have opened an overflow connection.
    assert.deepEqual((await health()).connections, { overflow: 0 });
  });
});

describe('relay: overflow connections of a shared 2025 HTTP service (stateful sessions)', () => {
  let gw: Gateway;
  let web: ChildProcess;
  const clients: Array<{ close(): Promise<void> }> = [];
  before(async () => {
    // The echo fixture over Streamable HTTP: a 2025 client gets a session of its own (Mcp-Session-Id).
    const fixture = await startHttpFixture();
    web = fixture.proc;
    gw = await startGateway({ services: { webshared: { transport: 'http', url: fixture.url, era: 'legacy' } } });
    await allReady(gw);
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
    web?.kill();
  });

  test("its session waits for an abandoned round: another agent's eliciting call goes to another session and is answered", async () => {
    const abandoner = await gw.token({ sub: 'web-abandoner', scopes: ['webshared:call'] });
    const events = await modernPost(
      gw,
      abandoner,
      'tools/call',
      { name: 'webshared.ask-name', arguments: {} },
      { capabilities: { elicitation: { form: {} } } },
    );
    assert.equal(events.at(-1)?.result?.resultType, 'input_required', JSON.stringify(events.at(-1)));

    const c = await connect(gw, 'legacy', { token: await gw.token({ sub: 'web-other', scopes: ['webshared:call'] }) });
    clients.push(c);
    const asked: string[] = [];
    c.setRequestHandler('elicitation/create', async (req) => {
      asked.push((req.params as { message: string }).message);
      return { action: 'accept', content: { name: 'web-other' } };
    });
    const m = ANSWER.exec(text(await c.callTool({ name: 'webshared.ask-name', arguments: {} })));
    assert.ok(m);
    assert.equal(m[1], 'web-other');
    assert.deepEqual(asked, ['Your name?'], 'asked exactly once');
    const services = ((await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; connections?: Record<string, number> }> }).services;
    // The main session still waits for the abandoner: the call ran on one overflow session.
    assert.deepEqual(services.find((x) => x.name === 'webshared')?.connections, { overflow: 1 });
  });
});
