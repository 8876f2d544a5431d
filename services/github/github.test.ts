/**
 * github connector end to end: the real service process under Node's permission model (test hooks on:
 * a fixed resolver, connections to loopback only), a real SDK v2 client, and the real
 * @octokit/fixtures-server on 127.0.0.1 answering with responses recorded from the real API (see
 * test/helpers/github-fixtures.ts for what is recorded and what is derived), each answer's shape
 * checked against GitHub's published OpenAPI description (@octokit/openapi).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, codeReadFlags, resultText, startService, toolErrorOf } from '../../test/corpora/harness.js';
import type { RunningService } from '../../test/corpora/harness.js';
import { githubScenarios, openApi, startFixturesServer } from '../../test/helpers/github-fixtures.js';
import type { Fixture, FixturesServer } from '../../test/helpers/github-fixtures.js';
import { nextLink, rateLimitWaitS } from './client.js';

const MAIN = join(REPO, 'dist', 'services', 'github', 'main.js');
const TOKEN = 'ghp_MicroMcpTestToken5e1f7a2b9c4d8e0f3a6b';
const HOST = 'gh.test';
const HOOKS = { MICRO_MCP_GITHUB_TEST_HOOKS: '1', GH_TOKEN: TOKEN };
const work = mkdtempSync(join(tmpdir(), 'micro-mcp-github-'));
const scenarios = githubScenarios(TOKEN, Math.floor(Date.now() / 1000));
let server: FixturesServer;
const started: RunningService[] = [];

before(async () => {
  server = await startFixturesServer(scenarios, work, HOST);
});
after(async () => {
  for (const s of started) await s.close();
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The connector for one loaded scenario, with extra flags. */
async function connector(scenario: string, extra: string[] = []): Promise<RunningService> {
  const base = await server.load(scenario);
  const svc = await startService(
    'github',
    ['--base-url', base, '--token-env', 'GH_TOKEN', '--test-resolve', `${HOST}=127.0.0.1`, '--test-allow-loopback', '--max-retry-wait-ms', '3000', ...extra],
    { sandboxRead: [], env: HOOKS },
  );
  started.push(svc);
  return svc;
}

const errorOf = (r: { isError?: unknown; _meta?: unknown; structuredContent?: unknown }) => toolErrorOf(r);

describe("github: the recorded answers match GitHub's OpenAPI description", () => {
  it('every fixture the connector is tested against has the shape the description gives its operation', () => {
    const api = openApi();
    const op: Record<string, [string, string]> = {
      'search-issues': ['get', '/search/issues'],
      'paginate-issues': ['get', '/repos/{owner}/{repo}/issues'],
      'create-issue': ['post', '/repos/{owner}/{repo}/issues'],
      'create-invalid': ['post', '/repos/{owner}/{repo}/issues'],
      'get-issue': ['get', '/repos/{owner}/{repo}/issues/{issue_number}'],
      'not-found': ['get', '/repos/{owner}/{repo}/issues/{issue_number}'],
      'list-repos': ['get', '/orgs/{org}/repos'],
    };
    const basicError = api.component('basic-error');
    let checked = 0;
    for (const [name, fixtures] of Object.entries(scenarios)) {
      for (const f of fixtures as Fixture[]) {
        const [method, path] = name.startsWith('rate-limit') ? ['get', '/search/issues'] : op[name]!;
        assert.ok(api.has(method, path), `${method} ${path}`);
        // Rate-limit answers are not per-operation in the description: they are its basic-error.
        const check = f.status === 429 || (f.status === 403 && name.startsWith('rate-limit')) ? basicError : api.validator(method, path, f.status);
        const valid = check(f.response);
        const problems = (check.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
        if (name === 'search-issues' || (name.startsWith('rate-limit') && f.status === 200)) {
          // The one drift between the 2017 recording and today's description: search answers have since
          // gained a required `search_type`. Exactly that, nothing else, so any further drift fails here.
          assert.deepEqual(problems, [" must have required property 'search_type'"], name);
        } else assert.ok(valid, `${name} ${f.status}: ${problems.slice(0, 3).join('; ')}`);
        checked++;
      }
    }
    assert.equal(checked, 17);
  });

  it('reads Link headers and rate-limit headers as GitHub documents them', () => {
    const link = scenarios['paginate-issues']![1]!.headers.link as string;
    assert.equal(nextLink(link), 'https://api.github.com/repositories/1000/issues?per_page=3&page=3');
    assert.equal(nextLink('<https://x/a?page=1>; rel="prev", <https://x/a?page=5>; rel="last"'), undefined);
    assert.equal(rateLimitWaitS(429, { 'retry-after': '7' }, 0), 7);
    assert.equal(rateLimitWaitS(403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '100' }, 40_000), 60);
    assert.equal(rateLimitWaitS(403, { 'x-ratelimit-remaining': '12' }, 0), undefined, 'a 403 that is not a rate limit');
    assert.equal(rateLimitWaitS(200, { 'retry-after': '1' }, 0), undefined);
  });
});

describe('github: reads against the recorded API', () => {
  it('lists the read tools only (createIssue needs --allow-create-issue), each with an output schema', async () => {
    const svc = await connector('search-issues');
    const { tools } = await svc.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['getIssue', 'listRepos', 'searchIssues']);
    for (const t of tools) assert.deepEqual([t.annotations?.readOnlyHint, Boolean(t.outputSchema)], [true, true], t.name);
    const r = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: 'sesame' });
    assert.equal(r.isError, undefined, resultText(r));
    const out = r.structuredContent as { items: { number: number; title: string; state: string }[]; total_count: number; pages: number; has_more: boolean };
    assert.equal(out.total_count, 2);
    assert.deepEqual(
      out.items.map((i) => i.number),
      (scenarios['search-issues']![0]!.response as { items: { number: number }[] }).items.map((i) => i.number),
    );
    assert.deepEqual([out.pages, out.has_more], [1, false]);
  });

  it('follows Link rel="next" across every page of the recorded pagination, within its page cap', async () => {
    const svc = await connector('paginate-issues');
    const r = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'paginate-issues', per_page: 3, pages: 5 });
    assert.equal(r.isError, undefined, resultText(r));
    const out = r.structuredContent as { items: { number: number }[]; pages: number; has_more: boolean; total_count: number | null };
    assert.deepEqual([out.items.length, out.pages, out.has_more, out.total_count], [13, 5, false, null]);
    const capped = await connector('paginate-issues');
    const two = (await capped.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'paginate-issues', per_page: 3, pages: 2 }))
      .structuredContent as typeof out;
    assert.deepEqual([two.items.length, two.pages, two.has_more], [6, 2, true]);
    const over = await capped.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'paginate-issues', per_page: 3, pages: 6 });
    assert.match(resultText(over), /pages must be <= 5/);
  });

  it("gets an issue with its body, lists an organisation's repositories over two pages", async () => {
    const svc = await connector('get-issue');
    const issue = (await svc.call('getIssue', { owner: 'octokit-fixture-org', repo: 'add-labels-to-issue', number: 1 })).structuredContent as Record<
      string,
      unknown
    >;
    assert.deepEqual([issue.number, issue.title, issue.state, issue.is_pull_request, issue.body_truncated], [1, 'Issue without a label', 'open', false, false]);
    const repos = await connector('list-repos');
    const r = (await repos.call('listRepos', { owner: 'octokit-fixture-org', per_page: 1, pages: 2 })).structuredContent as { items: { full_name: string }[] };
    assert.deepEqual(
      r.items.map((x) => x.full_name),
      ['octokit-fixture-org/hello-world', 'octokit-fixture-org/search-issues'],
    );
  });

  it("answers API errors with stable codes and GitHub's message", async () => {
    const svc = await connector('not-found');
    const r = await svc.call('getIssue', { owner: 'octokit-fixture-org', repo: 'hello-world', number: 999 });
    assert.equal(r.isError, true);
    assert.deepEqual(errorOf(r), { code: 'not_found', message: "not found, or not visible to the service's token (HTTP 404: Not Found)" });
  });

  it('refuses a query that would widen the search beyond the named repository, before any request', async () => {
    const svc = await connector('search-issues');
    for (const q of ['sesame repo:octokit-fixture-org/secret', 'x ORG:acme', 'a (user:bob)', '-repo:a/b x', 'owner:acme']) {
      const r = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: q });
      assert.equal(errorOf(r)?.code, 'query_refused', q);
    }
    // The scenario's one recorded request is still there: nothing was sent.
    const ok = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: 'sesame' });
    assert.equal(ok.isError, undefined, resultText(ok));
  });
});

describe('github: rate limits are honoured', () => {
  it('waits out retry-after on a 429, then retries once and answers', async () => {
    const svc = await connector('rate-limit-retry-after');
    const t0 = performance.now();
    const r = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: 'sesame' });
    assert.equal(r.isError, undefined, resultText(r));
    assert.ok(performance.now() - t0 >= 1000, 'waited the second retry-after asked for');
    assert.equal((r.structuredContent as { total_count: number }).total_count, 2);
  });

  it('waits until x-ratelimit-reset on a 403 with no requests remaining, then retries', async () => {
    const svc = await connector('rate-limit-reset');
    const r = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: 'sesame' });
    assert.equal(r.isError, undefined, resultText(r));
  });

  it('reports a reset beyond --max-retry-wait-ms with the seconds to wait, without retrying', async () => {
    const svc = await connector('rate-limit-long');
    const r = await svc.call('searchIssues', { owner: 'octokit-fixture-org', repo: 'search-issues', query: 'sesame' });
    const e = errorOf(r)!;
    // A retry would have met no recorded answer (a not_found): this answer is the first response's.
    assert.equal(e.code, 'rate_limited');
    const wait = e.retry_after_s;
    assert.ok(typeof wait === 'number' && wait > 3500 && wait <= 3600, String(wait));
  });
});

describe('github: writes only when enabled', () => {
  it('creates an issue with --allow-create-issue, and maps a 422 to "invalid"', async () => {
    const svc = await connector('create-issue', ['--allow-create-issue']);
    const { tools } = await svc.client.listTools();
    assert.deepEqual(tools.find((t) => t.name === 'createIssue')?.annotations, {
      readOnlyHint: false,
      destructiveHint: false,
      idempotentHint: false,
      openWorldHint: false,
    });
    const r = await svc.call('createIssue', { owner: 'octokit-fixture-org', repo: 'add-labels-to-issue', title: 'Issue without a label' });
    assert.equal(r.isError, undefined, resultText(r));
    assert.deepEqual([(r.structuredContent as { number: number }).number, (r.structuredContent as { state: string }).state], [1, 'open']);
    const bad = await connector('create-invalid', ['--allow-create-issue']);
    const e = errorOf(await bad.call('createIssue', { owner: 'octokit-fixture-org', repo: 'errors', title: 'x' }));
    assert.deepEqual(e, { code: 'invalid', message: 'the API refused the request as invalid (HTTP 422: Validation Failed)' });
  });
});

describe('github: reach and secrets', () => {
  it('refuses a base URL that resolves to a private address, before connecting', async () => {
    const svc = await startService(
      'github',
      ['--base-url', 'http://gh.test:8080/api', '--token-env', 'GH_TOKEN', '--test-resolve', 'gh.test=192.168.1.20', '--test-allow-loopback'],
      { sandboxRead: [], env: HOOKS },
    );
    started.push(svc);
    const r = await svc.call('getIssue', { owner: 'a', repo: 'b', number: 1 });
    assert.deepEqual(errorOf(r), { code: 'address_blocked', message: 'URL refused: the host resolves to a non-public address (private)' });
    assert.doesNotMatch(svc.stderr(), /test-hook: refused connect/);
  });

  it('never writes the token to a log line, an error or a result; it is sent only as the Authorization header', () => {
    // Every scenario above answered only requests whose Authorization matched the token (the fixtures' matchers).
    for (const s of started) assert.doesNotMatch(s.stderr(), new RegExp(TOKEN), 'stderr');
  });

  it('refuses a missing or malformed secret reference, naming the reference and never a value', () => {
    const run = (args: string[], env: Record<string, string>) =>
      spawnSync(process.execPath, [MAIN, ...args, '--no-sandbox-check', '--insecure-no-credentials', '--check'], {
        encoding: 'utf8',
        env: { PATH: '', ...env },
      });
    const unset = run(['--base-url', 'https://api.github.com', '--token-env', 'GH_TOKEN'], {});
    assert.equal(unset.status, 2);
    assert.match(unset.stderr, /--token-env GH_TOKEN: the variable is not set for this service/);
    const spaced = run(['--base-url', 'https://api.github.com', '--token-env', 'GH_TOKEN'], { GH_TOKEN: 'two words' });
    assert.equal(spaced.status, 2);
    assert.match(spaced.stderr, /empty or malformed/);
    assert.doesNotMatch(spaced.stderr, /two words/);
    const plain = run(['--base-url', 'http://api.github.com', '--token-env', 'GH_TOKEN'], { GH_TOKEN: TOKEN });
    assert.equal(plain.status, 2);
    assert.match(plain.stderr, /the base URL must use https/);
    const file = join(work, 'token');
    writeFileSync(file, `${TOKEN}\n`);
    const fromFile = run(['--base-url', 'https://ghe.example.com/api/v3/', '--token-file', file], {});
    assert.equal(fromFile.status, 0, fromFile.stderr);
    assert.deepEqual(JSON.parse(fromFile.stdout), {
      status: 'ok',
      service: 'micro-mcp-github',
      enabled: true,
      host: 'ghe.example.com',
      writes: false,
      sandboxed: false,
      credentials: 'insecure',
    });
    assert.doesNotMatch(fromFile.stdout + fromFile.stderr, new RegExp(TOKEN));
  });

  it('with --optional and nothing configured, serves no tools and says how to enable them', async () => {
    const svc = await startService('github', ['--base-url-env', 'GH_URL', '--token-env', 'GH_TOKEN', '--optional'], { sandboxRead: [], env: {} });
    started.push(svc);
    assert.equal(svc.client.getServerCapabilities()?.tools, undefined);
    assert.match(svc.client.getInstructions() ?? '', /DISABLED, no tools \(GH_URL and GH_TOKEN are not set\)/);
    const r = spawnSync(
      process.execPath,
      [
        '--experimental-permission',
        '--no-warnings',
        ...codeReadFlags(),
        MAIN,
        '--base-url-env',
        'GH_URL',
        '--token-env',
        'GH_TOKEN',
        '--optional',
        '--check',
        '--insecure-no-credentials',
      ],
      { encoding: 'utf8', env: { GH_TOKEN: TOKEN } },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).enabled, false);
    assert.match(r.stderr, /github connector disabled: GH_URL is not set/);
  });
});
