/**
 * Several replicas on real parts (issue #15): two gateways sharing a real redis-server, behind a
 * real nginx with the shipped config, on loopback. Limits hold across replicas, any replica's keys
 * verify anywhere, both eras work through nginx, a replica killed under load loses no audit record
 * while the other keeps serving, and Redis restarting gives clear refusals, then recovers by itself.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { createAuthenticator } from '../../src/auth/authenticator.js';
import { mintDevToken } from '../../src/auth/dev.js';
import { redisState } from '../../src/state/redis.js';
import { readRecords, verifyCli } from '../helpers/audit.js';
import { connect, echoService, eventually, type Gateway, modernPost, startGateway } from '../helpers/harness.js';
import { freePort, type Nginx, type RedisServer, startNginx, startRedis } from '../helpers/replicas.js';

const CALLS_PER_MINUTE = 12;
let dir: string;
let redis: RedisServer;
let nginx: Nginx;
const replicas: Record<'r1' | 'r2', Gateway> = {} as Record<'r1' | 'r2', Gateway>;
const ports = { r1: 0, r2: 0, nginx: 0 };
const silent = { warn: () => undefined, info: () => undefined, error: () => undefined, debug: () => undefined, child: () => silent };

/** The audit directory of a replica. */
const auditOf = (r: 'r1' | 'r2') => path.join(dir, `audit-${r}`);

async function startReplica(name: 'r1' | 'r2'): Promise<Gateway> {
  return startGateway(
    {
      server: { port: ports[name], replica_id: name, page_size: 2, public_url: `http://127.0.0.1:${ports.nginx}`, trusted_proxies: ['127.0.0.1'] },
      state: { redis: redis.url, key_prefix: 'e2e-replicas:' },
      limits: { calls_per_minute: CALLS_PER_MINUTE, burst: CALLS_PER_MINUTE, concurrent_per_principal: 0 },
      // Answers wait for their outcome records, so a replica killed outright loses none of them.
      audit: { file: path.join(auditOf(name), 'audit.jsonl'), outcome_before_answer: true },
      // legacyecho: a 2025-era service, whose elicitations park the call at the replica that forwarded it.
      services: { echo: echoService(), legacyecho: echoService({ era: 'legacy' }, undefined, 'echo://legacyecho/info') },
    },
    { dir },
  );
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-replicas-'));
  redis = await startRedis();
  [ports.r1, ports.r2, ports.nginx] = [await freePort(), await freePort(), await freePort()];
  // nginx first: the port it was given is taken at once, not after the replicas' start-up, when
  // another test's process could have been given it meanwhile (its upstreams may come up later).
  nginx = await startNginx(path.join(dir, 'nginx'), ports.r1, ports.r2, ports.nginx);
  replicas.r1 = await startReplica('r1');
  replicas.r2 = await startReplica('r2');
  // Whatever answers on nginx's port is nginx in front of these replicas.
  const ready = (await (await fetch(`${nginx.url}/readyz`)).json()) as { replica?: string };
  assert.ok(ready.replica === 'r1' || ready.replica === 'r2', `nginx's port answers for ${JSON.stringify(ready).slice(0, 200)}`);
});
after(async () => {
  await nginx?.stop();
  for (const r of Object.values(replicas)) await r?.stop();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Both replicas' gateways mint tokens with the same dev key (one dir), for nginx's URL. */
const token = (sub: string, scopes = ['echo:call']) => replicas.r1.token({ sub, scopes });
const text = (r: { content?: unknown }) => (r.content as Array<{ text: string }>)[0]!.text;
/** A replica straight, not through nginx. */
const direct = (r: 'r1' | 'r2') => ({ ...replicas[r], mcpUrl: `http://127.0.0.1:${ports[r]}/mcp` });
/** One raw 2026-07-28 legacyecho.confirm at replica `r` (with an answer: the agent's retry); the last message. */
const confirmAt = async (r: 'r1' | 'r2', t: string, retry: Record<string, unknown> = {}) =>
  (
    await modernPost(
      direct(r),
      t,
      'tools/call',
      { name: 'legacyecho.confirm', arguments: { question: 'across?' }, ...retry },
      { capabilities: { elicitation: { form: {} } } },
    )
  ).at(-1)!;
/** The agent's accepting answer to the input request of an input_required result. */
const accept = (first: Record<string, any>) => ({
  inputResponses: { [Object.keys(first.result.inputRequests)[0]!]: { action: 'accept', content: { ok: true } } },
  requestState: first.result.requestState as string,
});
const served = (r: 'r1' | 'r2', sub: string) =>
  readRecords(auditOf(r)).filter((l) => l.rec.kind === 'decision' && (l.rec.principal as { id: string } | undefined)?.id === sub).length;

describe('two replicas behind nginx, sharing Redis', () => {
  test('both eras work through nginx, and 2026-07-28 requests reach both replicas', async () => {
    for (const era of ['modern', 'legacy'] as const) {
      const client: Client = await connect(replicas.r1, era, { token: await token(`both-${era}`) });
      for (let i = 0; i < 4; i++) assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: `${era} ${i}` } })), `${era} ${i}`);
      await client.close();
    }
    assert.ok(served('r1', 'both-modern') > 0 && served('r2', 'both-modern') > 0, 'stateless requests are spread over both replicas');
    const legacy = [served('r1', 'both-legacy'), served('r2', 'both-legacy')];
    assert.ok(legacy.includes(0) && legacy.includes(4), `a 2025 session stays on its replica (${legacy.join(' / ')})`);
  });

  test(`a limit of ${CALLS_PER_MINUTE} calls a minute holds across both replicas (within one)`, async () => {
    const client = await connect(replicas.r1, 'modern', { token: await token('limited') });
    let ok = 0;
    let refused = 0;
    for (let i = 0; i < CALLS_PER_MINUTE * 2; i++) {
      await client.callTool({ name: 'echo.echo', arguments: { text: 'x' } }).then(
        () => ok++,
        (e: { code?: number; data?: { limit?: string } }) => {
          assert.equal(e.code, -32029);
          assert.equal(e.data?.limit, 'rate');
          refused++;
        },
      );
    }
    await client.close();
    assert.ok(Math.abs(ok - CALLS_PER_MINUTE) <= 1, `${ok} calls admitted of ${CALLS_PER_MINUTE}`);
    assert.equal(ok + refused, CALLS_PER_MINUTE * 2);
    assert.ok(served('r1', 'limited') > 0 && served('r2', 'limited') > 0, 'both replicas took part');
  });

  test('a tools/list cursor from one replica pages on at the other (state handed to agents verifies everywhere)', async () => {
    // Straight to each replica, not through nginx: the first page from r1, the next from r2.
    const t = await token('pager');
    const [first] = await modernPost(direct('r1'), t, 'tools/list');
    const cursor = first?.result?.nextCursor as string | undefined;
    assert.equal(first?.result?.tools?.length, 2);
    assert.equal(typeof cursor, 'string');
    const [second] = await modernPost(direct('r2'), t, 'tools/list', { cursor });
    assert.equal(second?.result?.tools?.length, 2, JSON.stringify(second));
    // A client that walks every page through nginx gets each tool once.
    const client = await connect(replicas.r1, 'modern', { token: t });
    const names = (await client.listTools()).tools.map((x) => x.name);
    await client.close();
    assert.ok(names.includes('echo.echo') && names.includes('echo.confirm'), names.join(', '));
    assert.equal(new Set(names).size, names.length, 'no tool twice');
  });

  test('a list change seen by one replica reaches listeners held by the other (both eras), through the Redis event bus', { timeout: 30_000 }, async () => {
    // Listeners held by r2: a 2025 session (its GET stream) and a 2026-07-28 subscriptions/listen.
    const legacy = await connect(direct('r2'), 'legacy', { token: await token('listener-2025') });
    const modern = await connect(direct('r2'), 'modern', { token: await token('listener-2026') });
    const legacySaw = new Promise<void>((r) => legacy.setNotificationHandler('notifications/tools/list_changed', () => r()));
    const modernSaw = new Promise<void>((r) => modern.setNotificationHandler('notifications/tools/list_changed', () => r()));
    const sub = await modern.listen({ toolsListChanged: true });
    // The change happens at r1: its echo service adds a tool.
    const caller = await connect(direct('r1'), 'modern', { token: await token('toggler') });
    try {
      assert.equal(text(await caller.callTool({ name: 'echo.toggle', arguments: {} })), 'extra on');
      await Promise.all([legacySaw, modernSaw]);
      // r1's own list shows the change (each replica runs its own stdio service processes).
      assert.ok((await caller.listTools(undefined, { cacheMode: 'bypass' })).tools.some((t) => t.name === 'echo.extra'));
    } finally {
      assert.equal(text(await caller.callTool({ name: 'echo.toggle', arguments: {} })), 'extra off');
      await caller.close();
      await sub.close();
      await legacy.close();
      await modern.close();
    }
  });

  test("a resource update seen by one replica reaches the other replica's subscribers, through the Redis event bus", { timeout: 30_000 }, async () => {
    const uri = 'echo://legacyecho/info';
    const scopes = ['legacyecho:call'];
    // A subscribes at r2; B at r1, where the update happens (each replica runs its own service process).
    const a = await connect(direct('r2'), 'legacy', { token: await token('subscriber-r2', scopes) });
    const b = await connect(direct('r1'), 'legacy', { token: await token('subscriber-r1', scopes) });
    try {
      const aGot = new Promise<string>((r) => a.setNotificationHandler('notifications/resources/updated', (n) => r(n.params.uri)));
      const bGot = new Promise<string>((r) => b.setNotificationHandler('notifications/resources/updated', (n) => r(n.params.uri)));
      await a.subscribeResource({ uri });
      await b.subscribeResource({ uri });
      assert.equal(text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri } })), `updated ${uri}`);
      assert.deepEqual(await Promise.all([aGot, bGot]), [uri, uri]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a 2026 agent's subscriptions/listen stream at one replica hears a resource update seen by the other", { timeout: 30_000 }, async () => {
    const uri = 'echo://legacyecho/info';
    const scopes = ['legacyecho:call'];
    // A listens at r2; B subscribes at r1, whose service process sends the update.
    const a = await connect(direct('r2'), 'modern', { token: await token('listener-r2', scopes) });
    const b = await connect(direct('r1'), 'legacy', { token: await token('subscriber-r1b', scopes) });
    try {
      const aGot = new Promise<string>((r) => a.setNotificationHandler('notifications/resources/updated', (n) => r(n.params.uri)));
      const stream = await a.listen({ resourceSubscriptions: [uri] });
      assert.deepEqual(stream.honoredFilter, { resourceSubscriptions: [uri] });
      await b.subscribeResource({ uri });
      assert.equal(text(await b.callTool({ name: 'legacyecho.touch', arguments: { uri } })), `updated ${uri}`);
      assert.equal(await aGot, uri);
      await stream.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a 2025 service's elicitation asked through one replica is answered through the other, and completes", async () => {
    const t = await token('asker', ['legacyecho:call']);
    const first = await confirmAt('r1', t);
    assert.equal(first.result?.resultType, 'input_required', JSON.stringify(first));
    assert.equal(Object.values(first.result.inputRequests as Record<string, { method: string }>)[0]!.method, 'elicitation/create');
    // The retry reaches r2, which carries the answer to r1, where the service's call waits.
    const done = await confirmAt('r2', t, accept(first));
    assert.deepEqual(done.result?.content, [{ type: 'text', text: 'confirmed' }], JSON.stringify(done));
    // Decided and completed at r1 (one decision, its ok outcome); r2 decided nothing for this agent.
    const atR1 = readRecords(auditOf('r1')).map((l) => l.rec as Record<string, any>);
    const decisions = atR1.filter((r) => r.kind === 'decision' && r.principal?.id === 'asker');
    assert.equal(decisions.length, 1);
    await eventually(() =>
      readRecords(auditOf('r1')).some((l) => l.rec.kind === 'outcome' && l.rec.decision_id === decisions[0]!.decision_id && l.rec.outcome === 'ok'),
    );
    assert.equal(served('r2', 'asker'), 0);
    // The same answer again (through r2): the call is no longer parked, a clear refusal, recorded at r2.
    const again = await confirmAt('r2', t, accept(first));
    assert.equal(again.error?.code, -32602, JSON.stringify(again));
    assert.equal(again.error?.message, 'the input request has expired or belongs to another caller');
    await eventually(() =>
      readRecords(auditOf('r2')).some(
        (l) => l.rec.principal && (l.rec.principal as { id: string }).id === 'asker' && JSON.stringify(l.rec).includes('ERR_INPUT_STATE_INVALID'),
      ),
    );
  });

  test("a malformed answer carried to the replica holding the call: the exact -32602, the service's call ended and recorded there", async () => {
    const t = await token('bad-asker', ['legacyecho:call']);
    const first = await confirmAt('r1', t);
    assert.equal(first.result?.resultType, 'input_required', JSON.stringify(first));
    const key = Object.keys(first.result.inputRequests)[0]!;
    const bad = await confirmAt('r2', t, { inputResponses: { [key]: { action: 'maybe' } }, requestState: first.result.requestState as string });
    assert.equal(bad.error?.code, -32602, JSON.stringify(bad));
    const message = 'the answer to the input request (elicitation/create) is not a valid ElicitResult; the call was ended';
    assert.equal(bad.error?.message, message);
    const atR1 = readRecords(auditOf('r1')).map((l) => l.rec as Record<string, any>);
    const decision = atR1.find((r) => r.kind === 'decision' && r.principal?.id === 'bad-asker');
    const outcome = atR1.find((r) => r.kind === 'outcome' && r.decision_id === decision?.decision_id);
    assert.deepEqual([outcome?.outcome, outcome?.error], ['refused', { code: 'ERR_INPUT_ANSWER_INVALID', message }]);
    // The call is gone: a valid answer now is refused as for any call no longer parked.
    const late = await confirmAt('r2', t, accept(first));
    assert.equal(late.error?.message, 'the input request has expired or belongs to another caller', JSON.stringify(late));
  });

  test("every replica's JWKS document holds both replicas' signing keys", async () => {
    const kids = async (p: number) =>
      (
        (await (await fetch(`http://127.0.0.1:${p}/.well-known/jwks.json`, { headers: { host: `127.0.0.1:${ports.nginx}` } })).json()) as {
          keys: Array<{ kid: string }>;
        }
      ).keys
        .map((k) => k.kid)
        .sort();
    const both = await eventually(async () => {
      const [a, b] = [await kids(ports.r1), await kids(ports.r2)];
      return a.length >= 4 && JSON.stringify(a) === JSON.stringify(b) ? a : undefined;
    });
    assert.equal(new Set(both).size, both!.length);
  });

  test('a single-use token id is refused on the second replica that sees it (the replay cache is shared)', async () => {
    const a = await redisState({
      url: redis.url,
      prefix: 'e2e-replay:',
      limits: { calls_per_minute: 0, burst: 1, concurrent_per_principal: 0, concurrent_total: 0 },
      log: silent,
      replicaId: 'ra',
    });
    const b = await redisState({
      url: redis.url,
      prefix: 'e2e-replay:',
      limits: { calls_per_minute: 0, burst: 1, concurrent_per_principal: 0, concurrent_total: 0 },
      log: silent,
      replicaId: 'rb',
    });
    try {
      const keyDir = path.join(dir, 'keys');
      const resource = `http://127.0.0.1:${ports.nginx}/mcp`;
      const cfg = { mode: 'dev' as const, dev_key_dir: keyDir, single_use_jti: true };
      const onA = await createAuthenticator(cfg, { resource, loopback: true, replay: a.replay });
      const onB = await createAuthenticator(cfg, { resource, loopback: true, replay: b.replay });
      const t = `Bearer ${await mintDevToken({ keyDir, sub: 'once', ttl: '5m', audience: resource })}`;
      assert.equal((await onA.authenticate(t)).id, 'once');
      await assert.rejects(onB.authenticate(t), (e: { code?: string }) => e.code === 'ERR_AUTH_REPLAYED');
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('Redis gone: calls are refused with ERR_STATE_UNAVAILABLE and readiness says so; Redis back: service resumes without a restart', async () => {
    const client = await connect(replicas.r1, 'modern', { token: await token('redis-outage') });
    assert.equal(text(await client.callTool({ name: 'echo.echo', arguments: { text: 'up' } })), 'up');
    await redis.stop();
    const e = await client.callTool({ name: 'echo.echo', arguments: { text: 'down' } }).then(
      () => undefined,
      (err: { message: string; data?: { code?: string } }) => err,
    );
    assert.equal(e?.data?.code, 'ERR_STATE_UNAVAILABLE');
    assert.equal(e?.message, 'the shared state holding the call limits is unreachable; call refused');
    const ready = await fetch(`http://127.0.0.1:${ports.r1}/readyz`, { headers: { host: `127.0.0.1:${ports.nginx}` } });
    assert.equal(ready.status, 503);
    assert.deepEqual(((await ready.json()) as { state: unknown }).state, { kind: 'redis', status: 'unavailable' });
    await redis.start();
    await eventually(async () => {
      try {
        return text(await client.callTool({ name: 'echo.echo', arguments: { text: 'back' } })) === 'back';
      } catch {
        return false;
      }
    }, 15_000);
    await client.close();
  });

  test('a replica killed under load: the other keeps serving, no audit record is lost, its 2025 agents start over elsewhere', async () => {
    // A 2025 session on r2 (its id starts with r2-).
    let onR2: Client | undefined;
    for (let i = 0; i < 10 && !onR2; i++) {
      const c = await connect(replicas.r1, 'legacy', { token: await token(`stranded-${i}`) });
      const sid = (c as unknown as { transport?: { sessionId?: string } }).transport?.sessionId ?? '';
      if (sid.startsWith('r2-')) onR2 = c;
      else await c.close();
    }
    assert.ok(onR2, 'a session landed on r2');
    // A 2026-07-28 agent's call parked at r2 (its service asked for input), to be answered after the kill.
    const parkedAgent = await token('parked-at-r2', ['legacyecho:call']);
    const parked = await confirmAt('r2', parkedAgent);
    assert.equal(parked.result?.resultType, 'input_required');
    // Eight agents, each staying inside its own rate limit (the limit is per principal).
    const agents = await Promise.all(Array.from({ length: 8 }, async (_, i) => connect(replicas.r1, 'modern', { token: await token(`load-${i}`) })));
    const answered: string[] = [];
    const failures: string[] = [];
    let stop = false;
    const loops = agents.map(async (c, i) => {
      for (let n = 0; !stop && n < CALLS_PER_MINUTE - 1; n++) {
        const tag = `load-${i}-${n}`;
        await c.callTool({ name: 'echo.echo', arguments: { text: tag } }).then(
          (r) => answered.push(text(r)),
          (e: Error) => failures.push(`${tag}: ${e.message}`),
        );
      }
    });
    await eventually(() => answered.length >= 20);
    replicas.r2.proc.kill('SIGKILL');
    await new Promise<void>((r) => replicas.r2.proc.once('exit', () => r()));
    const atKill = answered.length;
    await eventually(() => answered.length >= atKill + 20 || answered.length + failures.length === agents.length * (CALLS_PER_MINUTE - 1), 20_000);
    assert.ok(answered.length >= atKill + 20, `the surviving replica kept serving (${atKill} answered at the kill, ${answered.length} at the end)`);
    stop = true;
    await Promise.all(loops);
    assert.ok(failures.length <= agents.length, `each agent noticed at most one failed request: ${failures.join('; ')}`);
    // Every answered call was decided and its outcome recorded by the replica that served it.
    const records = [...readRecords(auditOf('r1')), ...readRecords(auditOf('r2'))].map((l) => l.rec as Record<string, any>);
    const outcomes = new Set(records.filter((r) => r.kind === 'outcome' && r.outcome === 'ok').map((r) => r.decision_id));
    const decided = records.filter((r) => r.kind === 'decision' && String(r.principal?.id).startsWith('load-') && r.result.allow);
    const withOutcome = decided.filter((d) => outcomes.has(d.decision_id)).length;
    assert.ok(withOutcome >= answered.length, `${withOutcome} decisions with an ok outcome for ${answered.length} answered calls`);
    for (const r of ['r1', 'r2'] as const) {
      const v = verifyCli(auditOf(r));
      assert.equal(v.code, 0, `${r}: ${v.out}`);
    }
    // The stranded 2025 agent: its session is gone (404 from the backup), a new one works through r1.
    await assert.rejects(onR2!.callTool({ name: 'echo.echo', arguments: { text: 'stranded' } }), /Session not found|404/);
    // The parked call's answer reaches r1: r2 is gone, said at once (nobody listens on its channel).
    const orphan = await confirmAt('r1', parkedAgent, accept(parked));
    assert.equal(orphan.error?.code, -32602, JSON.stringify(orphan));
    assert.equal(orphan.error?.message, 'the gateway replica holding this call is gone; call the tool again');
    const again = await connect(replicas.r1, 'legacy', { token: await token('stranded-again') });
    assert.equal(text(await again.callTool({ name: 'echo.echo', arguments: { text: 'again' } })), 'again');
    await again.close();
    for (const c of agents) await c.close();
  });
});
