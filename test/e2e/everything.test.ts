/**
 * A third-party server behind the gateway: @modelcontextprotocol/server-everything (from npm, SDK 1.x,
 * 2025 era, over stdio) attached as namespace "everything". Its tools, prompts and resources are reachable
 * through the namespace by agents of both eras, including its long-running operation's progress and its
 * elicitation tool (a 2025 server-to-client request, carried to the agent as input_required rounds).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, eventually, modernPost, ROOT, startGateway, type Era, type Gateway } from '../helpers/harness.js';

const EVERYTHING = path.join(ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const text = (r: { content?: unknown }) => (r.content as Array<{ text?: string }>)[0]?.text ?? '';

describe('server-everything behind the gateway', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({
      services: { everything: { transport: 'stdio', command: 'node', args: [EVERYTHING, 'stdio'], era: 'auto' } },
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test('the service was negotiated as a 2025-era server and is ready', async () => {
    const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as { services: Array<{ name: string; state: string; era: string }> };
    const s = ready.services.find((x) => x.name === 'everything')!;
    assert.equal(s.state, 'ready');
    assert.equal(s.era, 'legacy');
  });

  for (const era of ['modern', 'legacy'] as Era[]) {
    describe(`agent era ${era}`, () => {
      let client: Client;
      before(async () => {
        client = await connect(gw, era);
        client.setRequestHandler('elicitation/create', async (req) => {
          const props = Object.keys((req.params as { requestedSchema?: { properties?: object } }).requestedSchema?.properties ?? {});
          return { action: 'accept', content: Object.fromEntries(props.map((p) => [p, p === 'name' ? 'Ada' : undefined]).filter(([, v]) => v)) };
        });
      });
      after(async () => {
        await client?.close();
      });

      test('tools are listed under the namespace and callable', async () => {
        const { tools } = await client.listTools();
        const names = tools.map((t) => t.name);
        for (const t of ['everything.echo', 'everything.get-sum', 'everything.trigger-long-running-operation']) assert.ok(names.includes(t), t);
        assert.ok(names.every((n) => n.startsWith('everything.')));
        assert.equal(text(await client.callTool({ name: 'everything.echo', arguments: { message: `hi ${era}` } })), `Echo: hi ${era}`);
        const sum = await client.callTool({ name: 'everything.get-sum', arguments: { a: 2, b: 3 } });
        assert.match(text(sum), /5/);
      });

      test('prompts are namespaced; resources keep their URIs and are read through the gateway', async () => {
        const { prompts } = await client.listPrompts();
        assert.ok(prompts.some((p) => p.name === 'everything.simple-prompt'));
        const p = await client.getPrompt({ name: 'everything.args-prompt', arguments: { city: 'Lyon' } });
        assert.match(JSON.stringify(p.messages), /Lyon/);
        const { resources } = await client.listResources();
        const doc = resources.find((r) => r.uri.startsWith('demo://resource/static/document/'));
        assert.ok(doc, 'static documents listed with their own URIs');
        const read = await client.readResource({ uri: doc.uri });
        assert.ok(read.contents.length > 0);
        // A URI only a template matches is routed by the template.
        const dyn = await client.readResource({ uri: 'demo://resource/dynamic/text/3' });
        assert.match(JSON.stringify(dyn.contents), /3/);
      });

      test("the long-running operation's progress reaches the agent", async () => {
        const seen: number[] = [];
        const r = await client.callTool(
          { name: 'everything.trigger-long-running-operation', arguments: { duration: 1, steps: 4 } },
          { onprogress: (p) => seen.push(p.progress) },
        );
        assert.match(text(r), /completed/i);
        // The SDK client may settle the call before dispatching a progress notification that arrives in
        // the same read as the result; the raw-stream test below proves every step is relayed, in order.
        assert.ok(seen.length >= 3, JSON.stringify(seen));
        assert.deepEqual(seen, [1, 2, 3, 4].slice(0, seen.length));
      });

      test('completion of its completable prompt is routed to it, context included (decided by policy)', async () => {
        const ref = { type: 'ref/prompt' as const, name: 'everything.completable-prompt' };
        const dept = await client.complete({ ref, argument: { name: 'department', value: 'S' } });
        assert.deepEqual(dept.completion, { values: ['Sales', 'Support'], total: 2, hasMore: false });
        const lead = await client.complete({ ref, argument: { name: 'name', value: '' }, context: { arguments: { department: 'Engineering' } } });
        assert.deepEqual(lead.completion, { values: ['Alice', 'Bob', 'Charlie'], total: 3, hasMore: false });
      });

      test('its elicitation tool reaches exactly this agent call and the answer goes back', async () => {
        const r = await client.callTool({ name: 'everything.trigger-elicitation-request', arguments: {} });
        assert.match(JSON.stringify(r.content), /accept/);
        assert.match(JSON.stringify(r.content), /Ada/);
      });
    });
  }

  test('every progress step is relayed before the result (raw 2026-07-28 stream)', async () => {
    const name = 'everything.trigger-long-running-operation';
    const events = await modernPost(gw, await gw.token(), 'tools/call', { name, arguments: { duration: 1, steps: 4 } }, { meta: { progressToken: 'p1' } });
    const progress = events.filter((e) => e.method === 'notifications/progress');
    assert.deepEqual(
      progress.map((e) => e.params.progress),
      [1, 2, 3, 4],
    );
    assert.ok(
      progress.every((e) => e.params.progressToken === 'p1'),
      'the agent sees its own progress token',
    );
    assert.ok(events.at(-1)!.result, 'the result comes last');
  });

  test('every list is filtered by policy: without the scope, no prompts, resources or resource templates either', async () => {
    const scoped = await connect(gw, 'modern');
    const without = await connect(gw, 'legacy', { token: await gw.token({ scopes: ['fs:read'] }) });
    try {
      // The control: with everything:call the service's templates, prompts and resources are listed.
      assert.ok((await scoped.listResourceTemplates()).resourceTemplates.length > 0);
      assert.ok((await scoped.listPrompts()).prompts.length > 0);
      assert.ok((await scoped.listResources()).resources.length > 0);
      assert.deepEqual((await without.listResourceTemplates()).resourceTemplates, []);
      assert.deepEqual((await without.listPrompts()).prompts, []);
      assert.deepEqual((await without.listResources()).resources, []);
    } finally {
      await scoped.close();
      await without.close();
    }
  });

  test('resources/subscribe (2025 agents): its updates reach only the subscribed agent, and only after it subscribed', async () => {
    const a = await connect(gw, 'legacy', { token: await gw.token({ sub: 'everything-sub-a' }) });
    const b = await connect(gw, 'legacy', { token: await gw.token({ sub: 'everything-sub-b' }) });
    try {
      const uri = (await a.listResources()).resources.find((r) => r.uri.startsWith('demo://resource/static/document/'))!.uri;
      const aGot: string[] = [];
      const bGot: Array<{ uri: string; afterSubscribe: boolean }> = [];
      let bSubscribed = false;
      a.setNotificationHandler('notifications/resources/updated', (n) => void aGot.push(n.params.uri));
      b.setNotificationHandler('notifications/resources/updated', (n) => void bGot.push({ uri: n.params.uri, afterSubscribe: bSubscribed }));
      await a.subscribeResource({ uri });
      // The service sends updates for its subscribed URIs every 5 s once toggled on.
      await a.callTool({ name: 'everything.toggle-subscriber-updates', arguments: {} });
      await eventually(() => aGot.length >= 1, 15_000);
      assert.ok(
        aGot.every((u) => u === uri),
        JSON.stringify(aGot),
      );
      bSubscribed = true;
      await b.subscribeResource({ uri });
      await eventually(() => bGot.length >= 1, 15_000);
      assert.deepEqual(bGot[0], { uri, afterSubscribe: true }, 'B heard nothing before it asked to subscribe');
      await a.callTool({ name: 'everything.toggle-subscriber-updates', arguments: {} });
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('roots are never relayed: the service never learns of an agent that declares roots (its roots tool is not even registered)', async () => {
    const client = await connect(gw, 'legacy', { capabilities: { roots: { listChanged: true }, elicitation: { form: {} } } });
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      // The control: the service's tools are listed; it registers get-roots-list only for a client with roots.
      assert.ok(names.includes('everything.echo'));
      assert.ok(!names.includes('everything.get-roots-list'), JSON.stringify(names));
    } finally {
      await client.close();
    }
  });

  test('a third-party tool without its scope is hidden and denied', async () => {
    const token = await gw.token({ scopes: ['fs:read'] });
    const client = await connect(gw, 'modern', { token });
    const { tools } = await client.listTools();
    assert.ok(!tools.some((t) => t.name.startsWith('everything.')));
    // Only scope is missing, so the edge asks for step-up (403 insufficient_scope) rather than deciding.
    await assert.rejects(client.callTool({ name: 'everything.echo', arguments: { message: 'x' } }), (e: Error) => /scope/i.test(`${e.name} ${e.message}`));
    await client.close();
  });
});
