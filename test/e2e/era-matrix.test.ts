/**
 * Issue #11 point 1, the cells of the era matrix (docs/COMPATIBILITY.md) that no other end-to-end test
 * proves: every agent era (2.x client pinned to 2026-07-28, 2.x client in a 2025-11-25 session, the
 * 1.x client) x every service era (the echo fixture as a 2025 and as a 2026-07-28 service over stdio,
 * and over Streamable HTTP), each with the exact outcome: tool results with structured content, output
 * schemas and isError; resources (list, templates, read); prompts (get, input_required retry);
 * completion of a resource template argument; URL-mode elicitation; sampling; ping; prompts and
 * resources list_changed.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import type { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { allReady, connect, connectV1, echoService, eventually, type Gateway, startGateway, startHttpFixture } from '../helpers/harness.js';
import { fileLine } from '../helpers/watch.js';

/**
 * Each service behind the gateway: its name, era and transport. `asks`: it can send requests and
 * notifications of its own and hears a notifications/cancelled for a request in flight (every one
 * does: the fixture serves 2025 HTTP clients in stateful sessions). `promptAsks`: a question during prompts/get reaches the agent (2026 services: an
 * input_required result; 2025 services: an elicitation/create the gateway attributes to the prompt).
 */
const SERVICES = [
  { name: 'legacyecho', era: '2025 stdio', asks: true, promptAsks: true },
  { name: 'modernecho', era: '2026 stdio', asks: true, promptAsks: true },
  { name: 'weblegacy', era: '2025 HTTP', asks: true, promptAsks: true },
  { name: 'webmodern', era: '2026 HTTP', asks: true, promptAsks: true },
] as const;
const AGENTS = ['modern', 'legacy'] as const;
const agentEra = { modern: '2026 agent', legacy: '2025 agent' } as const;
const uriOf = (service: string) => `echo://${service}/info`;
const text = (r: object) => ((r as { content?: Array<{ text?: string }> }).content ?? [])[0]?.text ?? '';
const CAPS = { elicitation: { form: {}, url: {} }, sampling: {} };
const SCOPES = SERVICES.map((s) => `${s.name}:call`);
type Msg = { level: string; logger?: string; data: unknown };
const logged = (tag: string, levels: string[]): Msg[] => levels.map((level) => ({ level, logger: 'echo', data: `${tag} ${level}` }));
/** Every page of a list, one request per page (the 2.x helpers would walk them themselves). */
async function pages(c: Client, method: 'tools/list' | 'prompts/list' | 'resources/list' | 'resources/templates/list', key: string) {
  const items: Array<{ name?: string; uri?: string }> = [];
  let cursor: string | undefined;
  let count = 0;
  do {
    const r = (await c.request({ method, params: cursor ? { cursor } : {} })) as Record<string, unknown> & { nextCursor?: string };
    items.push(...(r[key] as Array<{ name?: string; uri?: string }>));
    cursor = r.nextCursor;
    count++;
  } while (cursor);
  return { items, count };
}

describe('the era matrix: every feature in every agent era x service era pair', () => {
  let gw: Gateway;
  /** Where the services write "started TAG" and "cancelled TAG" (the slow tool). */
  const marker = path.join(mkdtempSync(path.join(tmpdir(), 'micro-mcp-matrix-')), 'marker.log');
  const webs: ChildProcess[] = [];
  const clients: Array<{ close(): Promise<void> }> = [];

  before(async () => {
    const weblegacy = await startHttpFixture({ uri: uriOf('weblegacy'), marker });
    const webmodern = await startHttpFixture({ modernOnly: true, uri: uriOf('webmodern'), marker });
    webs.push(weblegacy.proc, webmodern.proc);
    gw = await startGateway({
      // The tools and prompts lists span several pages, each mixing services.
      server: { page_size: 7 },
      services: {
        legacyecho: echoService({ era: 'legacy' }, marker, uriOf('legacyecho')),
        modernecho: echoService({ era: 'modern' }, marker, uriOf('modernecho')),
        weblegacy: { transport: 'http', url: weblegacy.url, era: 'legacy' },
        webmodern: { transport: 'http', url: webmodern.url, era: 'modern' },
      },
    });
    await allReady(gw);
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await gw?.stop();
    for (const p of webs) p.kill();
    rmSync(path.dirname(marker), { recursive: true, force: true });
  });

  async function agent(era: (typeof AGENTS)[number], sub: string): Promise<Client> {
    const c = await connect(gw, era, { token: await gw.token({ sub, scopes: SCOPES }), capabilities: CAPS });
    clients.push(c);
    return c;
  }

  for (const era of AGENTS) {
    test(`pagination (${agentEra[era]}): each list's cursor walks the merged list of all services, nothing twice`, async () => {
      const c = await agent(era, `matrix-pages-${era}`);
      const tools = await pages(c, 'tools/list', 'tools');
      const prompts = await pages(c, 'prompts/list', 'prompts');
      const resources = await pages(c, 'resources/list', 'resources');
      const templates = await pages(c, 'resources/templates/list', 'resourceTemplates');
      const names = tools.items.map((t) => t.name);
      for (const svc of SERVICES) {
        for (const t of ['echo', 'measure', 'visit', 'sample', 'relist', 'log']) assert.ok(names.includes(`${svc.name}.${t}`), `${svc.name}.${t} listed`);
        assert.deepEqual(
          prompts.items.filter((p) => p.name?.startsWith(`${svc.name}.`)).map((p) => p.name),
          [`${svc.name}.ask`, `${svc.name}.greet`],
        );
        assert.deepEqual(
          resources.items.filter((r) => r.uri?.startsWith(uriOf(svc.name))).map((r) => r.uri),
          [uriOf(svc.name)],
        );
      }
      assert.ok(tools.count > 1 && prompts.count > 1, `tools in ${tools.count} pages, prompts in ${prompts.count}`);
      assert.equal(templates.items.length, SERVICES.length);
      assert.equal(new Set(names).size, names.length, 'no tool twice');
      assert.equal(prompts.items.length, 2 * SERVICES.length, 'no prompt twice');
    });

    for (const svc of SERVICES) {
      describe(`${agentEra[era]} x ${svc.era} service`, () => {
        let c: Client;
        const s = svc.name;
        before(async () => {
          c = await agent(era, `matrix-${era}-${s}`);
        });

        test('tools: content, structured content, the output schema as published, isError', async () => {
          const listed = (await c.listTools(undefined, { cacheMode: 'bypass' })).tools.find((t) => t.name === `${s}.measure`);
          assert.deepEqual(listed?.outputSchema, {
            type: 'object',
            properties: { length: { type: 'integer' } },
            required: ['length'],
            additionalProperties: false,
          });
          const ok = await c.callTool({ name: `${s}.measure`, arguments: { text: 'hello' } });
          assert.deepEqual(ok.content, [{ type: 'text', text: '{"length":5}' }]);
          assert.deepEqual(ok.structuredContent, { length: 5 });
          assert.equal(ok.isError ?? false, false);
          const bad = await c.callTool({ name: `${s}.measure`, arguments: { text: 'x', fail: true } });
          assert.equal(bad.isError, true);
          assert.deepEqual(bad.content, [{ type: 'text', text: 'cannot measure: asked to fail' }]);
          assert.equal(bad.structuredContent, undefined);
        });

        test('resources: list, templates, read (a listed URI and one of a template)', async () => {
          const uri = uriOf(s);
          const listed = (await c.listResources()).resources.filter((r) => r.uri.startsWith(uri));
          assert.deepEqual(
            listed.map((r) => [r.uri, r.name, r.mimeType]),
            [[uri, 'info', 'text/plain']],
          );
          const templates = (await c.listResourceTemplates()).resourceTemplates.filter((t) => t.uriTemplate.startsWith(uri));
          assert.deepEqual(
            templates.map((t) => [t.uriTemplate, t.name]),
            [[`${uri}/items/{id}`, 'item']],
          );
          for (const u of [uri, `${uri}/items/7`]) {
            assert.deepEqual((await c.readResource({ uri: u })).contents, [{ uri: u, mimeType: 'text/plain', text: `resource ${u}` }]);
          }
        });

        test('prompts: get with arguments', async () => {
          const greet = await c.getPrompt({ name: `${s}.greet`, arguments: { who: 'Grace' } });
          assert.deepEqual(greet.messages, [{ role: 'user', content: { type: 'text', text: 'Hello Grace' } }]);
        });

        if (svc.promptAsks)
          test('prompts: an input_required round retried with the answer and its state', async () => {
            const asked: unknown[] = [];
            c.setRequestHandler('elicitation/create', async (req) => {
              asked.push(req.params);
              return { action: 'accept', content: { name: 'Ada' } };
            });
            const r = await c.getPrompt({ name: `${s}.ask` });
            assert.deepEqual(r.messages, [{ role: 'user', content: { type: 'text', text: 'Hello Ada (state ask-round-1)' } }]);
            assert.equal(asked.length, 1);
            assert.equal((asked[0] as { message: string }).message, 'Whom to greet?');
          });

        test("completion of a resource template's argument, routed to the template's service", async () => {
          const r = await c.complete({ ref: { type: 'ref/resource', uri: `${uriOf(s)}/items/{id}` }, argument: { name: 'id', value: '1' } });
          assert.deepEqual(r.completion, { values: ['1', '10'], total: 2, hasMore: false });
        });

        if (svc.asks)
          test(
            era === 'legacy'
              ? "logging: the agent's own level (setLevel) filters its call's messages"
              : "logging: the request's logLevel filters its call's messages; no level, none",
            async () => {
              const got: Msg[] = [];
              c.setNotificationHandler('notifications/message', (n) => void got.push(n.params as Msg));
              if (era === 'legacy') {
                await c.setLoggingLevel('warning');
                assert.equal(text(await c.callTool({ name: `${s}.log`, arguments: { tag: 'w' } })), 'logged w');
                await eventually(() => got.length >= 2);
                assert.deepEqual(got, logged('w', ['warning', 'error']));
                // The last message of a second call is the event that would have carried a stray one before it.
                await c.setLoggingLevel('error');
                await c.callTool({ name: `${s}.log`, arguments: { tag: 'e' } });
                await eventually(() => got.length >= 3);
                assert.deepEqual(got, [...logged('w', ['warning', 'error']), ...logged('e', ['error'])]);
              } else {
                assert.equal(text(await c.callTool({ name: `${s}.log`, arguments: { tag: 'quiet' } })), 'logged quiet');
                await c.callTool({ name: `${s}.log`, arguments: { tag: 'i' }, _meta: { 'io.modelcontextprotocol/logLevel': 'info' } });
                await eventually(() => got.length >= 3);
                assert.deepEqual(got, logged('i', ['info', 'warning', 'error']), 'the call without a level got none');
              }
            },
          );

        if (svc.asks)
          test('progress: every step reaches the agent before the result', async () => {
            const seen: Array<[number, number | undefined, string | undefined]> = [];
            const r = await c.callTool({ name: `${s}.progress`, arguments: { steps: 3 } }, { onprogress: (p) => seen.push([p.progress, p.total, p.message]) });
            assert.equal(text(r), 'done 3');
            assert.deepEqual(seen, [
              [1, 3, 'step 1'],
              [2, 3, 'step 2'],
              [3, 3, 'step 3'],
            ]);
          });

        if (svc.asks)
          test('cancellation: the agent cancels, the service aborts the call', async () => {
            const tag = `matrix-${era}-${s}`;
            const ac = new AbortController();
            const p = c.callTool({ name: `${s}.slow`, arguments: { tag, ms: 20_000 } }, { signal: ac.signal });
            await fileLine(marker, `started ${tag}`);
            ac.abort();
            await assert.rejects(p);
            await fileLine(marker, `cancelled ${tag}`);
          });

        if (svc.asks)
          test('elicitation in form mode: the question reaches the agent, its answer goes back', async () => {
            const asked: Array<Record<string, unknown>> = [];
            c.setRequestHandler('elicitation/create', async (req) => {
              asked.push(req.params as Record<string, unknown>);
              return { action: 'accept', content: { ok: true } };
            });
            assert.equal(text(await c.callTool({ name: `${s}.confirm`, arguments: { question: 'proceed?' } })), 'confirmed');
            assert.equal(asked.length, 1);
            assert.equal(asked[0]!.message, 'proceed?');
            assert.deepEqual(asked[0]!.requestedSchema, { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] });
          });

        if (svc.asks)
          test('elicitation in URL mode: the URL reaches the agent, its action goes back', async () => {
            const asked: Array<Record<string, unknown>> = [];
            c.setRequestHandler('elicitation/create', async (req) => {
              asked.push(req.params as Record<string, unknown>);
              return { action: 'accept' };
            });
            assert.equal(text(await c.callTool({ name: `${s}.visit`, arguments: {} })), 'visit accept');
            assert.equal(asked.length, 1);
            assert.equal(asked[0]!.mode, 'url');
            assert.equal(asked[0]!.url, 'https://example.com/connect');
            assert.equal(asked[0]!.message, 'Open the page to connect');
          });

        if (svc.asks)
          test("sampling: the service's request reaches the agent, the model's answer goes back", async () => {
            const asked: Array<Record<string, unknown>> = [];
            c.setRequestHandler('sampling/createMessage', async (req) => {
              asked.push(req.params as Record<string, unknown>);
              return { role: 'assistant', content: { type: 'text', text: 'forty-two' }, model: 'm1' };
            });
            assert.equal(text(await c.callTool({ name: `${s}.sample`, arguments: { prompt: 'the answer?' } })), 'sampled forty-two (m1)');
            assert.equal(asked.length, 1);
            assert.deepEqual(asked[0]!.messages, [{ role: 'user', content: { type: 'text', text: 'the answer?' } }]);
            assert.equal(asked[0]!.maxTokens, 50);
          });

        if (svc.asks)
          test('tools, prompts and resources list_changed reach the agent, and the new lists show the change', async () => {
            const seen = { tools: 0, prompts: 0, resources: 0 };
            c.setNotificationHandler('notifications/tools/list_changed', () => void seen.tools++);
            c.setNotificationHandler('notifications/prompts/list_changed', () => void seen.prompts++);
            c.setNotificationHandler('notifications/resources/list_changed', () => void seen.resources++);
            const listen = era === 'modern' ? await c.listen({ toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true }) : undefined;
            const has = async () => [
              (await c.listTools(undefined, { cacheMode: 'bypass' })).tools.some((t) => t.name === `${s}.extra`),
              (await c.listPrompts(undefined, { cacheMode: 'bypass' })).prompts.some((p) => p.name === `${s}.extra`),
              (await c.listResources(undefined, { cacheMode: 'bypass' })).resources.some((r) => r.uri === `${uriOf(s)}/extra`),
            ];
            assert.deepEqual(await has(), [false, false, false]);
            assert.equal(text(await c.callTool({ name: `${s}.toggle`, arguments: {} })), 'extra on');
            assert.equal(text(await c.callTool({ name: `${s}.relist`, arguments: {} })), 'entries on');
            await eventually(() => seen.tools >= 1 && seen.prompts >= 1 && seen.resources >= 1);
            assert.deepEqual(await has(), [true, true, true]);
            // Back to the fixture's lists for the next pair, heard again.
            assert.equal(text(await c.callTool({ name: `${s}.toggle`, arguments: {} })), 'extra off');
            assert.equal(text(await c.callTool({ name: `${s}.relist`, arguments: {} })), 'entries off');
            await eventually(() => seen.tools >= 2 && seen.prompts >= 2 && seen.resources >= 2);
            assert.deepEqual(await has(), [false, false, false]);
            await listen?.close();
          });

        // 2026-07-28 has no ping (the SDK refuses to send it on that revision): 2025 sessions only.
        if (era === 'legacy')
          test('ping is answered', async () => {
            assert.deepEqual(await c.ping(), {});
          });
      });
    }
  }

  describe('the 1.x client (@modelcontextprotocol/sdk) as the 2025 agent', () => {
    for (const svc of SERVICES) {
      test(`${svc.era} service: tools (validated against the output schema), resources read, prompts, elicitation, sampling, logging`, async () => {
        const s = svc.name;
        const v1: ClientV1 = await connectV1(gw, {
          token: await gw.token({ sub: `matrix-v1-${s}`, scopes: SCOPES }),
          capabilities: { elicitation: { form: {}, url: {} }, sampling: {} },
        });
        clients.push(v1);
        // The client validates structuredContent against the outputSchema it saw in tools/list: every page.
        for (let cursor: string | undefined, first = true; first || cursor; first = false) cursor = (await v1.listTools(cursor ? { cursor } : {})).nextCursor;
        const ok = await v1.callTool({ name: `${s}.measure`, arguments: { text: 'hello' } });
        assert.deepEqual(ok.structuredContent, { length: 5 });
        const bad = await v1.callTool({ name: `${s}.measure`, arguments: { text: 'x', fail: true } });
        assert.equal(bad.isError, true);
        assert.deepEqual(bad.content, [{ type: 'text', text: 'cannot measure: asked to fail' }]);

        const uri = `${uriOf(s)}/items/3`;
        assert.deepEqual((await v1.readResource({ uri })).contents, [{ uri, mimeType: 'text/plain', text: `resource ${uri}` }]);

        const greet = await v1.getPrompt({ name: `${s}.greet`, arguments: { who: 'Alan' } });
        assert.deepEqual(greet.messages, [{ role: 'user', content: { type: 'text', text: 'Hello Alan' } }]);

        const asked: string[] = [];
        v1.setRequestHandler(ElicitRequestSchema, async (req) => {
          const p = req.params as { mode?: string; message: string; url?: string };
          asked.push(`${p.mode ?? 'form'} ${p.message}${p.url ? ` ${p.url}` : ''}`);
          if (p.mode === 'url') return { action: 'accept' };
          return p.message === 'Whom to greet?' ? { action: 'accept', content: { name: 'Ada' } } : { action: 'accept', content: { ok: true } };
        });
        if (svc.promptAsks) {
          const ask = await v1.getPrompt({ name: `${s}.ask` });
          assert.deepEqual(ask.messages, [{ role: 'user', content: { type: 'text', text: 'Hello Ada (state ask-round-1)' } }]);
        }
        if (!svc.asks) return;
        assert.equal(text(await v1.callTool({ name: `${s}.confirm`, arguments: { question: 'proceed?' } })), 'confirmed');
        assert.equal(text(await v1.callTool({ name: `${s}.visit`, arguments: {} })), 'visit accept');
        assert.deepEqual(asked, [
          ...(svc.promptAsks ? ['form Whom to greet?'] : []),
          'form proceed?',
          'url Open the page to connect https://example.com/connect',
        ]);

        v1.setRequestHandler(CreateMessageRequestSchema, async () => ({ role: 'assistant', content: { type: 'text', text: 'seven' }, model: 'm2' }));
        assert.equal(text(await v1.callTool({ name: `${s}.sample`, arguments: { prompt: 'q' } })), 'sampled seven (m2)');

        const got: Msg[] = [];
        v1.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void got.push(n.params as Msg));
        await v1.setLoggingLevel('warning');
        assert.equal(text(await v1.callTool({ name: `${s}.log`, arguments: { tag: 'v1' } })), 'logged v1');
        await eventually(() => got.length >= 2);
        assert.deepEqual(got, logged('v1', ['warning', 'error']));
      });
    }
  });
});
