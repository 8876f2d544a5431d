/**
 * GitHub API fixtures for the github connector's tests, served by the real @octokit/fixtures-server
 * on 127.0.0.1 (test/fixtures/github-fixtures-server.mjs), and GitHub's published OpenAPI
 * description (@octokit/openapi) to check every answer's shape against.
 *
 * Recorded from the real API by @octokit/fixtures and used as recorded: search-issues (GET
 * /search/issues), paginate-issues (GET /repos/.../issues, five pages linked by Link headers),
 * add-labels-to-issue's first request (POST /repos/.../issues, 201). Derived from recorded answers,
 * for endpoints the recordings lack: get-issue (the recorded created issue, answered to GET .../issues/1),
 * list-repos (the recorded repository of get-repository, over two linked pages), create-invalid (the
 * recorded 422 of errors, answered to POST .../issues). Written here in GitHub's documented shapes:
 * not-found (404), and the rate-limit answers (429 with retry-after; 403 with x-ratelimit-remaining 0
 * and a reset time), each followed by the recorded search answer. Every request matcher carries the
 * test token instead of the recordings' placeholder, so a request without it is not answered.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import { REPO } from '../corpora/harness.js';

/** One nock fixture as @octokit/fixtures records it (normalized-fixture.json). */
export interface Fixture {
  scope: string;
  method: string;
  path: string;
  body?: unknown;
  status: number;
  response: unknown;
  reqheaders: Record<string, string | number>;
  responseIsBinary: boolean;
  headers: Record<string, string | number>;
}

const SCENARIOS = join(REPO, 'node_modules', '@octokit', 'fixtures', 'scenarios', 'api.github.com');

/** A recorded scenario of @octokit/fixtures. */
export function recorded(name: string): Fixture[] {
  return JSON.parse(readFileSync(join(SCENARIOS, name, 'normalized-fixture.json'), 'utf8')) as Fixture[];
}

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** An answer in GitHub's error shape ({message, documentation_url}) with the recordings' usual headers. */
function errorAnswer(template: Fixture, method: string, path: string, status: number, message: string, headers: Record<string, string>): Fixture {
  const f = clone(template);
  f.method = method;
  f.path = path;
  f.status = status;
  f.response = { message, documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api' };
  f.headers = { ...f.headers, ...headers };
  delete f.headers.link;
  delete f.body;
  delete f.reqheaders['content-type'];
  delete f.reqheaders['content-length'];
  return f;
}

/** Every scenario the tests load, with `token` in each request matcher. `nowS`: the clock rate-limit resets are set from. */
export function githubScenarios(token: string, nowS: number): Record<string, Fixture[]> {
  const search = recorded('search-issues');
  const created = recorded('add-labels-to-issue')[0]!;
  const repository = recorded('get-repository')[0]!;
  const getIssue = clone(created);
  Object.assign(getIssue, { method: 'get', path: '/repos/octokit-fixture-org/add-labels-to-issue/issues/1', status: 200 });
  delete getIssue.body;
  delete getIssue.reqheaders['content-type'];
  delete getIssue.reqheaders['content-length'];
  delete getIssue.headers.location;
  const page = (n: number, names: string[], last: boolean): Fixture => {
    const f = clone(repository);
    f.path = `/orgs/octokit-fixture-org/repos?per_page=1${n > 1 ? `&page=${n}` : ''}`;
    f.response = names.map((name) => ({ ...clone(repository.response as Record<string, unknown>), name, full_name: `octokit-fixture-org/${name}` }));
    f.headers = { ...f.headers };
    if (!last) f.headers.link = `<https://api.github.com/organizations/1000/repos?per_page=1&page=${n + 1}>; rel="next"`;
    if (n > 1) f.path = `/organizations/1000/repos?per_page=1&page=${n}`;
    return f;
  };
  const invalid = clone(recorded('errors')[0]!);
  Object.assign(invalid, { path: '/repos/octokit-fixture-org/errors/issues', body: { title: 'x' } });
  invalid.reqheaders['content-length'] = JSON.stringify({ title: 'x' }).length;
  const searchPath = search[0]!.path;
  const s: Record<string, Fixture[]> = {
    'search-issues': search,
    'paginate-issues': recorded('paginate-issues'),
    'create-issue': [created],
    'get-issue': [getIssue],
    'list-repos': [page(1, ['hello-world'], false), page(2, ['search-issues'], true)],
    'create-invalid': [invalid],
    'not-found': [errorAnswer(getIssue, 'get', '/repos/octokit-fixture-org/hello-world/issues/999', 404, 'Not Found', {})],
    'rate-limit-retry-after': [
      errorAnswer(search[0]!, 'get', searchPath, 429, 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.', {
        'retry-after': '1',
      }),
      search[0]!,
    ],
    'rate-limit-reset': [
      errorAnswer(search[0]!, 'get', searchPath, 403, 'API rate limit exceeded for user ID 1.', {
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String(nowS + 1),
      }),
      search[0]!,
    ],
    'rate-limit-long': [
      errorAnswer(search[0]!, 'get', searchPath, 403, 'API rate limit exceeded for user ID 1.', {
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String(nowS + 3600),
      }),
    ],
  };
  for (const fixtures of Object.values(s)) for (const f of fixtures) f.reqheaders.authorization = `token ${token}`;
  return clone(s);
}

/** A running fixtures server. */
export interface FixturesServer {
  port: number;
  /** Loads a scenario; resolves with the base URL the connector should use for it (one use each). */
  load(scenario: string): Promise<string>;
  close(): Promise<void>;
}

/** Starts the fixtures server with `scenarios`, serving URLs that name `hostname` (resolved to 127.0.0.1 by the test). */
export async function startFixturesServer(scenarios: Record<string, Fixture[]>, dir: string, hostname: string): Promise<FixturesServer> {
  const file = join(dir, 'github-fixtures.json');
  writeFileSync(file, JSON.stringify(scenarios));
  const child: ChildProcess = spawn(process.execPath, [join(REPO, 'test', 'fixtures', 'github-fixtures-server.mjs'), file, hostname], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the fixtures server exited (${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  return {
    port,
    async load(scenario) {
      const res = await fetch(`http://127.0.0.1:${port}/fixtures`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ scenario }),
      });
      if (res.status !== 201) throw new Error(`scenario ${scenario}: HTTP ${res.status}`);
      return ((await res.json()) as { url: string }).url;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) resolve();
        else {
          child.once('exit', () => resolve());
          child.kill();
        }
      }),
  };
}

/**
 * Validators of GitHub's published OpenAPI description (@octokit/openapi) for one operation's answer:
 * `check(method, path template, status)(body)`. OpenAPI 3.0's `nullable` is understood by ajv.
 */
export function openApi(): {
  has(method: string, path: string): boolean;
  validator(method: string, path: string, status: number): ValidateFunction;
  component(name: string): ValidateFunction;
} {
  const doc = JSON.parse(readFileSync(join(REPO, 'node_modules', '@octokit', 'openapi', 'generated', 'api.github.com.json'), 'utf8')) as {
    paths: Record<string, Record<string, { responses: Record<string, { $ref?: string; content?: Record<string, { schema: unknown }> }> }>>;
    components: Record<string, Record<string, unknown>>;
  };
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  // Relative references inside the description point into its components: make them absolute; and
  // OpenAPI 3.0's `nullable: true` becomes JSON Schema's null alternative (with or without a type).
  const rewrite = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(rewrite);
    if (typeof x !== 'object' || x === null) return x;
    const { nullable, ...rest } = x as Record<string, unknown>;
    const out = Object.fromEntries(
      Object.entries(rest).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `gh${v}` : rewrite(v)]),
    );
    if (nullable !== true) return out;
    if (typeof out.type === 'string' && out.enum === undefined) return { ...out, type: [out.type, 'null'] };
    return { anyOf: [out, { type: 'null' }] };
  };
  ajv.addSchema({ $id: 'gh', components: rewrite(doc.components) }, 'gh');
  return {
    has: (method, path) => doc.paths[path]?.[method.toLowerCase()] !== undefined,
    component: (name) => ajv.compile({ $ref: `gh#/components/schemas/${name}` }),
    validator(method, path, status) {
      const op = doc.paths[path]?.[method.toLowerCase()];
      if (op === undefined) throw new Error(`no ${method} ${path} in GitHub's OpenAPI description`);
      let r = op.responses[String(status)];
      if (r?.$ref !== undefined) r = doc.components.responses![r.$ref.split('/').pop()!] as typeof r;
      const schema = r?.content?.['application/json']?.schema;
      if (schema === undefined) throw new Error(`no ${status} JSON answer for ${method} ${path}`);
      return ajv.compile(rewrite(schema) as object);
    },
  };
}
