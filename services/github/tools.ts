/**
 * The github tools: searchIssues, getIssue, listRepos and, only with --allow-create-issue,
 * createIssue. `owner` and `repo` are arguments of every call, so that policies decide on them as
 * resource facts (`org`, `repo`); a search query is refused when it carries a qualifier that would
 * widen it beyond the named repository (`repo:`, `org:`, `user:`), since GitHub ORs repository
 * qualifiers together. API answers are read field by field into the shapes below (never passed on
 * whole) and capped.
 */
import type { ToolDef } from '../common/tool.js';
import { ToolError } from '../common/tool.js';
import type { GithubClient } from './client.js';
import type { GithubConfig } from './config.js';

const OWNER = { type: 'string', pattern: '^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$', description: 'The user or organisation that owns the repository.' };
const REPO = { type: 'string', pattern: '^(?!\\.\\.?$)[A-Za-z0-9._-]{1,100}$', description: 'The repository name (without the owner).' };

/** A search qualifier that selects repositories, organisations or users: it would widen the search. */
const WIDENING_QUALIFIER = /(^|[^A-Za-z0-9_])(repo|org|user|owner)\s*:/i;

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const obj = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

/** The issue fields the tools return. */
function issueOf(raw: unknown, bodyChars: number | undefined): Record<string, unknown> {
  const i = obj(raw);
  const number = num(i.number);
  const title = str(i.title);
  if (number === null || title === null) throw new ToolError('bad_response', 'the API answered an issue without a number or title');
  const out: Record<string, unknown> = {
    number,
    title,
    state: str(i.state) ?? 'unknown',
    user: str(obj(i.user).login),
    labels: Array.isArray(i.labels) ? i.labels.map((l) => (typeof l === 'string' ? l : str(obj(l).name))).filter((l): l is string => l !== null) : [],
    comments: num(i.comments) ?? 0,
    created_at: str(i.created_at),
    updated_at: str(i.updated_at),
    closed_at: str(i.closed_at),
    html_url: str(i.html_url),
    is_pull_request: i.pull_request !== undefined && i.pull_request !== null,
  };
  if (bodyChars !== undefined) {
    const body = str(i.body) ?? '';
    out.body = body.slice(0, bodyChars);
    out.body_truncated = body.length > bodyChars;
  }
  return out;
}

/** The repository fields the tools return. */
function repoOf(raw: unknown): Record<string, unknown> {
  const r = obj(raw);
  const fullName = str(r.full_name);
  if (fullName === null) throw new ToolError('bad_response', 'the API answered a repository without a name');
  return {
    full_name: fullName,
    name: str(r.name) ?? fullName.split('/')[1] ?? fullName,
    owner: str(obj(r.owner).login),
    private: r.private === true,
    archived: r.archived === true,
    description: str(r.description),
    html_url: str(r.html_url),
    default_branch: str(r.default_branch),
    updated_at: str(r.updated_at),
  };
}

const issueSchema = {
  type: 'object',
  properties: {
    number: { type: 'integer' },
    title: { type: 'string' },
    state: { type: 'string' },
    user: { type: ['string', 'null'] },
    labels: { type: 'array', items: { type: 'string' } },
    comments: { type: 'integer' },
    created_at: { type: ['string', 'null'] },
    updated_at: { type: ['string', 'null'] },
    closed_at: { type: ['string', 'null'] },
    html_url: { type: ['string', 'null'] },
    is_pull_request: { type: 'boolean' },
    body: { type: 'string' },
    body_truncated: { type: 'boolean' },
  },
  required: ['number', 'title', 'state', 'user', 'labels', 'comments', 'created_at', 'updated_at', 'closed_at', 'html_url', 'is_pull_request'],
  additionalProperties: false,
};

const repoSchema = {
  type: 'object',
  properties: {
    full_name: { type: 'string' },
    name: { type: 'string' },
    owner: { type: ['string', 'null'] },
    private: { type: 'boolean' },
    archived: { type: 'boolean' },
    description: { type: ['string', 'null'] },
    html_url: { type: ['string', 'null'] },
    default_branch: { type: ['string', 'null'] },
    updated_at: { type: ['string', 'null'] },
  },
  required: ['full_name', 'name', 'owner', 'private', 'archived', 'description', 'html_url', 'default_branch', 'updated_at'],
  additionalProperties: false,
};

const pagedOut = (items: Record<string, unknown>) => ({
  type: 'object',
  properties: {
    items: { type: 'array', items },
    total_count: { type: ['integer', 'null'] },
    pages: { type: 'integer' },
    has_more: { type: 'boolean' },
    truncated: { type: 'boolean' },
  },
  required: ['items', 'total_count', 'pages', 'has_more', 'truncated'],
  additionalProperties: false,
});

/** Builds the github tools (none when the API is not configured; createIssue only when enabled). */
export function githubTools(client: GithubClient | undefined, cfg: GithubConfig): ToolDef<never>[] {
  if (client === undefined) return [];
  const pages = {
    type: 'integer',
    minimum: 1,
    maximum: cfg.maxPages,
    description: `Pages to fetch, following the API's next links (default 1, at most ${cfg.maxPages}).`,
  };
  const perPage = { type: 'integer', minimum: 1, maximum: 100, description: 'Items per page (the API default is 30).' };

  /** Runs `fn` under the call's time budget. */
  const timed = async <T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), cfg.timeoutMs);
    try {
      return await fn(ac.signal);
    } catch (e) {
      if (ac.signal.aborted && !(e instanceof ToolError && e.code === 'rate_limited'))
        throw new ToolError('timeout', `the call took longer than ${cfg.timeoutMs} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };

  /** GETs `first` and up to `max - 1` next pages; `pick` reads the items of one page. */
  const paged = async (first: URL, max: number, pick: (json: unknown) => unknown[], map: (raw: unknown) => Record<string, unknown>, signal: AbortSignal) => {
    const items: Record<string, unknown>[] = [];
    let total: number | null = null;
    let url: URL | undefined = first;
    let fetched = 0;
    while (url !== undefined && fetched < max) {
      const res = await client.request('GET', url, undefined, signal);
      fetched++;
      if (fetched === 1) total = num(obj(res.json).total_count);
      for (const raw of pick(res.json)) items.push(map(raw));
      url = res.next;
    }
    // Keep the answer within its cap: whole items only, the rest reported as truncated.
    let bytes = 0;
    let kept = 0;
    for (const it of items) {
      bytes += Buffer.byteLength(JSON.stringify(it));
      if (bytes > cfg.maxResultBytes) break;
      kept++;
    }
    return { items: items.slice(0, kept), total_count: total, pages: fetched, has_more: url !== undefined, truncated: kept < items.length };
  };
  const arrayOf = (json: unknown): unknown[] => {
    if (!Array.isArray(json)) throw new ToolError('bad_response', 'the API answered something other than a list');
    return json;
  };
  const searchItems = (json: unknown): unknown[] => {
    const items = obj(json).items;
    if (!Array.isArray(items)) throw new ToolError('bad_response', 'the API answered a search without items');
    return items;
  };
  const summary = (
    kind: string,
    r: { items: Record<string, unknown>[]; total_count: number | null; has_more: boolean; truncated: boolean },
    line: (x: Record<string, unknown>) => string,
  ) =>
    `${r.items.length} ${kind}${r.total_count !== null ? ` of ${r.total_count}` : ''}${r.has_more ? ' (more pages)' : ''}${r.truncated ? ' (truncated)' : ''}\n${r.items.map(line).join('\n')}`;
  const issueLine = (i: Record<string, unknown>) => `#${i.number} [${i.state}] ${i.title}`;

  const searchIssues: ToolDef<{ owner: string; repo: string; query?: string; state?: 'open' | 'closed' | 'all'; per_page?: number; pages?: number }> = {
    name: 'searchIssues',
    title: 'Search issues of a repository',
    description: `Search the issues and pull requests of one repository (GitHub search syntax, without repo:, org: or user: qualifiers), or list them newest first when no query is given. At most ${cfg.maxPages} pages per call.`,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    inputSchema: {
      type: 'object',
      properties: {
        owner: OWNER,
        repo: REPO,
        query: { type: 'string', minLength: 1, maxLength: 256, description: 'Search terms and qualifiers (e.g. "crash is:open label:bug").' },
        state: { enum: ['open', 'closed', 'all'] },
        per_page: perPage,
        pages,
      },
      required: ['owner', 'repo'],
      additionalProperties: false,
    },
    outputSchema: pagedOut(issueSchema),
    async handler(args) {
      if (args.query !== undefined && WIDENING_QUALIFIER.test(args.query))
        throw new ToolError(
          'query_refused',
          'query refused: repo:, org:, user: and owner: qualifiers are not allowed (the repository is given by owner and repo)',
        );
      // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is this regex's job.
      if (args.query !== undefined && /[\u0000-\u001f\u007f]/.test(args.query)) throw new ToolError('query_refused', 'query refused: control characters');
      const r = await timed((signal) => {
        if (args.query !== undefined) {
          const q = `${args.query} repo:${args.owner}/${args.repo}${args.state !== undefined && args.state !== 'all' ? ` state:${args.state}` : ''}`;
          return paged(client.url('/search/issues', { q, per_page: args.per_page }), args.pages ?? 1, searchItems, (x) => issueOf(x, undefined), signal);
        }
        const first = client.url(`/repos/${args.owner}/${args.repo}/issues`, { state: args.state, per_page: args.per_page });
        return paged(first, args.pages ?? 1, arrayOf, (x) => issueOf(x, undefined), signal);
      });
      return { text: summary('issues', r, issueLine), structured: r };
    },
  };

  const getIssue: ToolDef<{ owner: string; repo: string; number: number }> = {
    name: 'getIssue',
    title: 'Get an issue',
    description: `Get one issue or pull request of a repository by number, with its body (at most ${cfg.maxBodyChars} characters).`,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    inputSchema: {
      type: 'object',
      properties: { owner: OWNER, repo: REPO, number: { type: 'integer', minimum: 1, maximum: 2147483647 } },
      required: ['owner', 'repo', 'number'],
      additionalProperties: false,
    },
    outputSchema: { ...issueSchema, required: [...issueSchema.required, 'body', 'body_truncated'] },
    async handler(args) {
      const res = await timed((signal) => client.request('GET', client.url(`/repos/${args.owner}/${args.repo}/issues/${args.number}`), undefined, signal));
      const issue = issueOf(res.json, cfg.maxBodyChars);
      return { text: `${issueLine(issue)}\n\n${issue.body as string}`, structured: issue };
    },
  };

  const listRepos: ToolDef<{ owner: string; type?: string; per_page?: number; pages?: number }> = {
    name: 'listRepos',
    title: "List an organisation's repositories",
    description: `List the repositories of an organisation that the service's token can see. At most ${cfg.maxPages} pages per call.`,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    inputSchema: {
      type: 'object',
      properties: { owner: OWNER, type: { enum: ['all', 'public', 'private', 'forks', 'sources', 'member'] }, per_page: perPage, pages },
      required: ['owner'],
      additionalProperties: false,
    },
    outputSchema: pagedOut(repoSchema),
    async handler(args) {
      const r = await timed((signal) =>
        paged(client.url(`/orgs/${args.owner}/repos`, { type: args.type, per_page: args.per_page }), args.pages ?? 1, arrayOf, repoOf, signal),
      );
      return { text: summary('repositories', r, (x) => `${x.full_name}${x.private ? ' (private)' : ''}`), structured: r };
    },
  };

  const createIssue: ToolDef<{ owner: string; repo: string; title: string; body?: string; labels?: string[] }> = {
    name: 'createIssue',
    title: 'Create an issue',
    description: 'Open a new issue in a repository, as the service’s GitHub identity.',
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    inputSchema: {
      type: 'object',
      properties: {
        owner: OWNER,
        repo: REPO,
        title: { type: 'string', minLength: 1, maxLength: 256 },
        body: { type: 'string', maxLength: 65536 },
        labels: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 50 }, maxItems: 10, uniqueItems: true },
      },
      required: ['owner', 'repo', 'title'],
      additionalProperties: false,
    },
    outputSchema: issueSchema,
    async handler(args) {
      const body: Record<string, unknown> = { title: args.title };
      if (args.body !== undefined) body.body = args.body;
      if (args.labels !== undefined) body.labels = args.labels;
      const res = await timed((signal) => client.request('POST', client.url(`/repos/${args.owner}/${args.repo}/issues`), body, signal));
      const issue = issueOf(res.json, undefined);
      return { text: `created ${issueLine(issue)} ${issue.html_url ?? ''}`.trim(), structured: issue };
    },
  };

  return (cfg.allowCreateIssue ? [searchIssues, getIssue, listRepos, createIssue] : [searchIssues, getIssue, listRepos]) as ToolDef<never>[];
}

/** The health summary exposed as the server's instructions and by --check (the hint when disabled). */
export function githubInstructions(cfg: GithubConfig): string {
  if (cfg.api === undefined)
    return `micro-mcp github connector: DISABLED, no tools (${cfg.disabledBecause ?? 'not configured'}): set the base URL and token variables for the gateway and restart. status: ok`;
  return `micro-mcp github connector (${cfg.allowCreateIssue ? 'read and create issues' : 'read-only'}) for ${cfg.api.base.host}: tools searchIssues, getIssue, listRepos${cfg.allowCreateIssue ? ', createIssue' : ''}. status: ok`;
}
