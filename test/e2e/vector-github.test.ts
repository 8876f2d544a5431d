/**
 * The vector service and the github connector behind a real gateway: both in bubblewrap (vector with
 * no network and its collection folder read-only, github with the host's network and no data), the
 * shipped example policies in both engines deciding on their declared resource facts (collection,
 * filter.tag; owner as org, repo), the github connector answered by the real @octokit/fixtures-server
 * on 127.0.0.1, and its token given to it alone.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { connect, DIST, echoService, ROOT, startGateway, type Gateway } from '../helpers/harness.js';
import { allowed, call, denied, FS_SAMPLE, reasonKeys, runCli, toolNames } from '../helpers/policy.js';
import { githubScenarios, startFixturesServer, type FixturesServer } from '../helpers/github-fixtures.js';

const TOKEN = 'ghp_E2eGatewayTestToken9d8c7b6a5f4e3d2c1b';
const work = mkdtempSync(path.join(tmpdir(), 'micro-mcp-vg-'));
const store = path.join(work, 'store');
let fixtures: FixturesServer;
let gw: Gateway;

const reads = (...extra: string[]) => [
  '--experimental-permission',
  `--allow-fs-read=${path.join(DIST, 'services')}`,
  `--allow-fs-read=${path.join(DIST, 'schemas', 'contracts')}`,
  `--allow-fs-read=${path.join(ROOT, 'node_modules')}`,
  `--allow-fs-read=${path.join(ROOT, 'package.json')}`,
  '--allow-fs-read=${MICRO_MCP_RUN_DIR}',
  ...extra.map((p) => `--allow-fs-read=${p}`),
];

before(async () => {
  const built = await runCli(['vector', 'index', FS_SAMPLE, '--collection', 'sample', '--store', store]);
  assert.equal(built.code, 0, built.stderr);
  fixtures = await startFixturesServer(githubScenarios(TOKEN, Math.floor(Date.now() / 1000)), work, 'gh.test');
  const base = await fixtures.load('search-issues');
  gw = await startGateway(
    {
      services: {
        // As src/config/examples/dev.yaml has them, with test paths.
        vector: {
          transport: 'stdio',
          command: 'node',
          args: [...reads(store), path.join(DIST, 'services', 'vector', 'main.js'), '--collection', 'sample', '--store', store],
          sandbox: { read: [store] },
          resource: { facts: { collection: '/collection', tag: '/filter/tag' } },
        },
        github: {
          transport: 'stdio',
          command: 'node',
          args: [
            ...reads(),
            path.join(DIST, 'services', 'github', 'main.js'),
            '--base-url',
            base,
            '--token-env',
            'GH_TOKEN',
            '--allow-create-issue',
            '--test-resolve',
            'gh.test=127.0.0.1',
            '--test-allow-loopback',
          ],
          env: { MICRO_MCP_GITHUB_TEST_HOOKS: '1' },
          inherit_env: ['GH_TOKEN'],
          sandbox: { network: true },
          resource: { facts: { org: '/owner', repo: '/repo' } },
        },
        echo: echoService(),
      },
    },
    { env: { GH_TOKEN: TOKEN } },
  );
});

after(async () => {
  await gw?.stop();
  await fixtures?.close();
  rmSync(work, { recursive: true, force: true });
});

const as = async (sub: string, groups: string[], scopes: string[]): Promise<Client> =>
  connect(gw, 'modern', { token: await gw.token({ sub, groups, scopes, purpose: '' }) });

describe('vector and github behind the gateway', () => {
  test('an engineer sees the read tools the policies could allow; createIssue only with github:write', async () => {
    const reader = await as('alice', ['eng'], ['vector:read', 'github:read']);
    assert.deepEqual(await toolNames(reader), ['github.getIssue', 'github.listRepos', 'github.searchIssues', 'vector.get', 'vector.search']);
    const writer = await as('alice', ['eng'], ['github:write']);
    assert.deepEqual(await toolNames(writer), ['github.createIssue']);
    const outsider = await as('olga', ['sales'], ['vector:read', 'github:read']);
    assert.deepEqual(await toolNames(outsider), []);
  });

  test('vector: a search within a permitted tag is served from the sandboxed collection; other tags and no tag are denied by both engines', async () => {
    const eng = await as('alice', ['eng'], ['vector:read']);
    const r = allowed(await call(eng, 'vector.search', { collection: 'sample', query: 'escalate policy decisions', k: 2, filter: { tag: 'eng' } }));
    const hits = (r.structuredContent as { results: { source: string; tags: string[] }[] }).results;
    assert.equal(hits[0]!.source, '/eng/runbook.md');
    assert.ok(hits.every((h) => h.tags.includes('eng')));
    const noTag = denied(await call(eng, 'vector.search', { collection: 'sample', query: 'runbook' }));
    assert.deepEqual(reasonKeys(noTag), ['cedar:vector_tag_required', 'rego:vector_tag_required']);
    const support = await as('sam', ['support'], ['vector:read']);
    const eng4support = denied(await call(support, 'vector.get', { collection: 'sample', id: '/eng/runbook.md#0', filter: { tag: 'eng' } }));
    assert.deepEqual(reasonKeys(eng4support), ['cedar:vector_tag_not_permitted', 'rego:vector_tag_not_permitted']);
    const pub = allowed(await call(support, 'vector.get', { collection: 'sample', id: '/public/faq.md#0', filter: { tag: 'public' } }));
    assert.equal((pub.structuredContent as { source: string }).source, '/public/faq.md');
  });

  test('github: a readable repository is searched through the connector; another is denied before it is asked', async () => {
    const eng = await as('alice', ['eng'], ['github:read', 'github:write']);
    const denials = denied(await call(eng, 'github.getIssue', { owner: 'acme', repo: 'payroll', number: 1 }));
    assert.deepEqual(reasonKeys(denials), ['cedar:github_repo_not_permitted', 'rego:github_repo_not_permitted']);
    // Creating an issue needs the user's consent to that exact call: asked, declined, never forwarded.
    const asked: string[] = [];
    eng.setRequestHandler('elicitation/create', async (req) => (asked.push(req.params.message), { action: 'decline' }));
    await assert.rejects(
      eng.callTool({ name: 'github.createIssue', arguments: { owner: 'octokit-fixture-org', repo: 'hello-world', title: 'x' } }),
      (e: { code?: number; message?: string; data?: { code?: string; consent?: string } }) => {
        assert.deepEqual([e.code, e.message, e.data?.code, e.data?.consent], [-32003, 'the user declined this call', 'ERR_CONSENT_DECLINED', 'declined']);
        return true;
      },
    );
    assert.equal(asked.length, 1);
    assert.match(
      asked[0]!,
      /^Allow github\.createIssue\?\nPurpose: none declared\nArguments:\n {2}owner: octokit-fixture-org\n {2}repo: hello-world\n {2}title: x\n/,
    );
    // The scenario holds one recorded answer: had either call been forwarded, this one would miss it.
    const r = allowed(await call(eng, 'github.searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: 'sesame' }));
    assert.equal(r.isError, undefined, JSON.stringify(r.content));
    assert.equal((r.structuredContent as { total_count: number }).total_count, 2);
  });

  test("the connector's token reaches it alone: not another service's environment, the audit or any log", async () => {
    const admin = await connect(gw, 'modern', { token: await gw.token({ scopes: ['echo:call'] }) });
    const env = (await admin.callTool({ name: 'echo.env', arguments: {} })).structuredContent as { env: string[] };
    assert.ok(env.env.length > 0);
    assert.ok(!env.env.includes('GH_TOKEN'), env.env.join(','));
    const audit = readFileSync(path.join(gw.dir, 'audit', 'audit.jsonl'), 'utf8');
    assert.match(audit, /github\.searchIssues/);
    assert.ok(!audit.includes(TOKEN), 'the audit never holds the token');
    assert.ok(!gw.output().includes(TOKEN), 'the gateway output never holds the token');
  });
});
