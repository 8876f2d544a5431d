/**
 * vector service end to end: the real service process under Node's permission model, a real SDK v2
 * client, collections built by the service's own --index mode from real folders, and (for the remote
 * embedder) a real OpenAI-compatible endpoint on loopback reached through the shared SSRF guard in
 * test-hook mode, which refuses any connection outside loopback.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { REPO, codeReadFlags, resultText, startService, startTestServer, toolErrorOf } from '../../test/corpora/harness.js';
import type { RunningService, TestServer } from '../../test/corpora/harness.js';
import { localEmbedding } from './embedder.js';
import { chunkText } from './indexer.js';

const MAIN = join(REPO, 'dist', 'services', 'vector', 'main.js');
const SAMPLE = join(REPO, 'services', 'fs', 'sample');
const work = mkdtempSync(join(tmpdir(), 'micro-mcp-vector-'));
after(() => rmSync(work, { recursive: true, force: true }));

/**
 * Runs the service's --index mode (as `micro-mcp vector index` does) and resolves with its exit and
 * output. Asynchronous: a test's loopback endpoint must keep answering while it runs.
 */
function index(
  dir: string,
  store: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, '--index', dir, '--collection', 'sample', '--store', store, ...extra], {
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.on('close', (status) => resolve({ status, out, err }));
  });
}

interface Result {
  id: string;
  score: number;
  source: string;
  tags: string[];
  title: string;
  text: string;
  truncated: boolean;
}

const results = (r: { structuredContent?: unknown }): Result[] => (r.structuredContent as { results: Result[] }).results;
const errorCode = (r: { isError?: unknown; _meta?: unknown; structuredContent?: unknown }): string | undefined => toolErrorOf(r)?.code;

const cos = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

describe('vector: the local embedder (unit)', () => {
  it('is deterministic, unit length, closer for shared words and word pieces, and knows no synonyms', () => {
    const q = localEmbedding('escalate to the platform team');
    assert.deepEqual(q, localEmbedding('escalate to the platform team'));
    assert.ok(Math.abs(cos(q, q) - 1) < 1e-5);
    const near = localEmbedding('Escalate to the platform team if policy decisions look wrong.');
    const far = localEmbedding('Welcome to the public documentation of the sample tree.');
    assert.ok(cos(q, near) > cos(q, far) + 0.2, 'shared words score higher');
    assert.ok(cos(localEmbedding('escalation'), localEmbedding('escalate')) > 0.3, 'word pieces (trigrams) carry inflections');
    assert.ok(cos(localEmbedding('car'), localEmbedding('automobile')) < 0.2, 'lexical only: no synonyms');
    assert.ok(
      localEmbedding('!!! ...').every((x) => x === 0),
      'no words, no vector',
    );
  });

  it('chunks at paragraph, line and word boundaries within the size', () => {
    const para = 'word '.repeat(150).trim();
    const chunks = chunkText(`${para}\n\n${para}\n\n${para}`, 800);
    assert.equal(chunks.length, 3);
    for (const c of chunks) assert.ok(c.length <= 800 && !c.startsWith(' ') && !c.endsWith(' '));
    assert.deepEqual(chunkText('  short  '), ['short']);
  });
});

describe('vector: the service over the sample folder', () => {
  const store = join(work, 'sample-store');
  let svc: RunningService;

  before(async () => {
    const r = await index(SAMPLE, store);
    assert.equal(r.status, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), { status: 'ok', collection: 'sample', store, embedder: 'local-hash-v1', files: 5, documents: 5, skipped: 0 });
    svc = await startService('vector', ['--collection', 'sample', '--store', store], { sandboxRead: [store] });
  });
  after(async () => svc?.close());

  it('lists search and get only (read-only by default), with input and output schemas', async () => {
    const { tools } = await svc.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['get', 'search']);
    for (const t of tools) {
      assert.ok(t.outputSchema, t.name);
      assert.equal(t.annotations?.readOnlyHint, true);
      assert.equal(t.annotations?.openWorldHint, false);
    }
    const search = tools.find((t) => t.name === 'search')!;
    assert.deepEqual((search.inputSchema.properties as Record<string, { const?: string }>).collection?.const, 'sample');
  });

  it('finds the runbook for a question about escalation, best first, within a tag', async () => {
    const r = await svc.call('search', { collection: 'sample', query: 'who do I escalate wrong policy decisions to?', k: 3, filter: { tag: 'eng' } });
    assert.equal(r.isError, undefined, resultText(r));
    const hits = results(r);
    assert.equal(hits[0]!.source, '/eng/runbook.md');
    assert.deepEqual(hits[0]!.tags, ['eng']);
    assert.equal(hits[0]!.id, '/eng/runbook.md#0');
    assert.ok(
      hits.every((h) => h.tags.includes('eng')),
      'the tag filter holds',
    );
    for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score, 'best first');
  });

  it('a tag filter returns only that tag; a source filter only that source', async () => {
    const pub = results(await svc.call('search', { collection: 'sample', query: 'escalate platform team runbook', k: 5, filter: { tag: 'public' } }));
    assert.ok(pub.length > 0);
    assert.ok(pub.every((h) => h.tags.includes('public') && h.source.startsWith('/public/')));
    const one = results(await svc.call('search', { collection: 'sample', query: 'welcome', k: 5, filter: { source: '/public/welcome.txt' } }));
    assert.deepEqual(
      one.map((h) => h.source),
      ['/public/welcome.txt'],
    );
  });

  it('gets a document by id, and answers "not found" for one that lacks the filter tag', async () => {
    const r = await svc.call('get', { collection: 'sample', id: '/eng/runbook.md#0', filter: { tag: 'eng' } });
    const doc = r.structuredContent as { text: string; source: string; chars: number; truncated: boolean };
    assert.equal(doc.source, '/eng/runbook.md');
    assert.equal(doc.text, readFileSync(join(SAMPLE, 'eng', 'runbook.md'), 'utf8').trim());
    assert.equal(doc.truncated, false);
    const other = await svc.call('get', { collection: 'sample', id: '/eng/runbook.md#0', filter: { tag: 'public' } });
    assert.equal(other.isError, true);
    assert.equal(errorCode(other), 'not_found');
    const missing = await svc.call('get', { collection: 'sample', id: '/nope#0' });
    assert.equal(errorCode(missing), 'not_found');
    assert.equal(resultText(missing), resultText(other), 'absent and hidden look the same');
  });

  it('refuses another collection, k over the cap, an oversized query, unknown filters and upsert', async () => {
    const refused = async (name: string, args: Record<string, unknown>, re: RegExp) => {
      const r = await svc.call(name, args);
      assert.equal(r.isError, true, `${name} ${JSON.stringify(args).slice(0, 80)}`);
      assert.match(resultText(r), re);
    };
    await refused('search', { collection: 'other', query: 'x' }, /collection must be equal to constant/);
    await refused('search', { collection: 'sample', query: 'x', k: 21 }, /k must be <= 20/);
    await refused('search', { collection: 'sample', query: 'x'.repeat(1001) }, /query must NOT have more than 1000 characters/);
    await refused('search', { collection: 'sample', query: 'x', filter: { owner: 'me' } }, /unexpected property "owner"/);
    await refused('search', { collection: 'sample', query: 'x', filter: { tag: '../eng' } }, /filter.tag must match pattern/);
    await refused('search', { collection: 'sample', query: '?!' }, /the query has no words to search for/);
    await assert.rejects(svc.call('upsert', { collection: 'sample', id: 'x', text: 'y' }), /Tool upsert not found/);
  });

  it('refuses a call without a gateway credential', async () => {
    const r = await svc.client.callTool({ name: 'search', arguments: { collection: 'sample', query: 'runbook' } });
    assert.equal(r.isError, true);
    assert.equal(errorCode(r), 'refused_credential');
    assert.match(resultText(r), /ERR_CREDENTIAL_MISSING/);
  });

  it('logs tool names and outcomes, never queries or document text', () => {
    const err = svc.stderr();
    assert.match(err, /"tool":"search"/);
    assert.doesNotMatch(err, /escalate|runbook|welcome/i);
  });
});

describe('vector: caps on answers', () => {
  it('keeps every answer within --max-result-bytes and each result within --max-snippet-chars', async () => {
    const dir = join(work, 'big');
    mkdirSync(join(dir, 'eng'), { recursive: true });
    for (let i = 0; i < 12; i++)
      writeFileSync(join(dir, 'eng', `note-${i}.md`), `incident notes ${i}: ${'the gateway restarted after the audit disk filled. '.repeat(15)}`);
    const store = join(work, 'big-store');
    assert.equal((await index(dir, store)).status, 0);
    const svc = await startService('vector', ['--collection', 'sample', '--store', store, '--max-result-bytes', '2048', '--max-snippet-chars', '300'], {
      sandboxRead: [store],
    });
    try {
      const r = await svc.call('search', { collection: 'sample', query: 'gateway restarted audit disk', k: 20 });
      const hits = results(r);
      assert.equal(hits.length, 12);
      const bytes = hits.reduce((n, h) => n + Buffer.byteLength(h.text), 0);
      assert.ok(bytes <= 2048, `${bytes} bytes`);
      assert.ok(hits.every((h) => h.text.length <= 300 && h.truncated));
      assert.equal((r.structuredContent as { truncated: boolean }).truncated, true);
    } finally {
      await svc.close();
    }
  });
});

describe('vector: writes only when enabled', () => {
  it('upserts into a writable store, persists across a restart, and replaces by id', async () => {
    const store = join(work, 'rw-store');
    assert.equal((await index(SAMPLE, store)).status, 0);
    const args = ['--collection', 'sample', '--store', store, '--allow-writes'];
    let svc = await startService('vector', args, { sandboxRead: [store], sandboxWrite: [store] });
    try {
      const { tools } = await svc.client.listTools();
      const upsert = tools.find((t) => t.name === 'upsert');
      assert.deepEqual(upsert?.annotations, { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false });
      const r = await svc.call('upsert', { collection: 'sample', id: 'note-1', text: 'Kubernetes pods restart on memory pressure', tags: ['eng'] });
      assert.deepEqual(r.structuredContent, { id: 'note-1', result: 'created', documents: 6 });
      const again = await svc.call('upsert', { collection: 'sample', id: 'note-1', text: 'Kubernetes pods restart when a node drains', tags: ['eng'] });
      assert.deepEqual(again.structuredContent, { id: 'note-1', result: 'updated', documents: 6 });
    } finally {
      await svc.close();
    }
    svc = await startService('vector', ['--collection', 'sample', '--store', store], { sandboxRead: [store] });
    try {
      const hits = results(await svc.call('search', { collection: 'sample', query: 'pods restart node drains', k: 1, filter: { tag: 'eng' } }));
      assert.equal(hits[0]!.id, 'note-1');
      assert.equal(hits[0]!.text, 'Kubernetes pods restart when a node drains');
    } finally {
      await svc.close();
    }
  });

  it('refuses to start with writes when write permission reaches beyond the store, or the store is read-only', () => {
    const store = join(work, 'rw-store');
    const start = (nodeFlags: string[]) =>
      spawnSync(process.execPath, [...nodeFlags, MAIN, '--collection', 'sample', '--store', store, '--allow-writes', '--check', '--insecure-no-credentials'], {
        encoding: 'utf8',
      });
    const wide = start(['--experimental-permission', '--no-warnings', ...codeReadFlags(), `--allow-fs-read=${store}`, `--allow-fs-write=${work}`]);
    assert.equal(wide.status, 2);
    assert.match(wide.stderr, /write permission reaches beyond the writable store/);
    const none = start(['--experimental-permission', '--no-warnings', ...codeReadFlags(), `--allow-fs-read=${store}`]);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /the writable store is not covered by --allow-fs-write/);
  });
});

describe('vector: start-up refusals', () => {
  it('refuses a missing store, another collection and another embedder, each with the reason', () => {
    const run = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, [MAIN, ...args, '--no-sandbox-check', '--insecure-no-credentials', '--check'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', ...env },
      });
    const store = join(work, 'sample-store');
    const empty = mkdtempSync(join(work, 'empty-'));
    const missing = run(['--collection', 'sample', '--store', empty]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /no collection at .*: build it with `micro-mcp vector index`/);
    const other = run(['--collection', 'docs', '--store', store]);
    assert.equal(other.status, 2);
    assert.match(other.stderr, /the store holds collection "sample", not "docs"/);
    const remote = run(
      [
        '--collection',
        'sample',
        '--store',
        store,
        '--embedder',
        'openai',
        '--embed-url',
        'https://embed.example/v1/embeddings',
        '--embed-model',
        'm',
        '--embed-key-env',
        'K',
      ],
      {
        K: 'sk-test',
      },
    );
    assert.equal(remote.status, 2);
    assert.match(remote.stderr, /built with embedder local-hash-v1 .* this service uses openai:m@embed.example: rebuild it/);
    const noKey = run([
      '--collection',
      'sample',
      '--store',
      store,
      '--embedder',
      'openai',
      '--embed-url',
      'https://embed.example/v1',
      '--embed-model',
      'm',
      '--embed-key-env',
      'UNSET_KEY',
    ]);
    assert.equal(noKey.status, 2);
    assert.match(noKey.stderr, /--embed-key-env UNSET_KEY: the variable is not set for this service/);
    const plain = run(
      [
        '--collection',
        'sample',
        '--store',
        store,
        '--embedder',
        'openai',
        '--embed-url',
        'http://embed.example/v1',
        '--embed-model',
        'm',
        '--embed-key-env',
        'K',
      ],
      {
        K: 'sk-test',
      },
    );
    assert.equal(plain.status, 2);
    assert.match(plain.stderr, /--embed-url must use https/);
  });
});

describe('vector: an OpenAI-compatible embeddings endpoint (loopback, SSRF-guarded)', () => {
  const KEY = 'sk-vector-test-7f3a9c1e5b';
  const HOOKS = { MICRO_MCP_VECTOR_TEST_HOOKS: '1', EMBED_KEY: KEY };
  let endpoint: TestServer;
  const seen: { auth: string | undefined; model: unknown; inputs: number }[] = [];
  let refuseKey = false;

  before(async () => {
    endpoint = await startTestServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString('utf8')));
      req.on('end', () => {
        const doc = JSON.parse(body) as { model: string; input: string[] };
        seen.push({ auth: req.headers.authorization, model: doc.model, inputs: doc.input.length });
        if (refuseKey) {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `bad key ${req.headers.authorization}` } }));
          return;
        }
        // A stand-in model: the local embedding in 64 dimensions, as an OpenAI endpoint would shape it.
        const data = doc.input.map((t, index) => ({ object: 'embedding', index, embedding: Array.from(localEmbedding(t, 64)) }));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data, model: doc.model }));
      });
    });
  });
  after(async () => endpoint?.close());

  const remoteFlags = (host: string) => [
    '--embedder',
    'openai',
    '--embed-url',
    `http://${host}:${endpoint.port}/v1/embeddings`,
    '--embed-model',
    'test-embed-64',
    '--embed-key-env',
    'EMBED_KEY',
  ];

  it('indexes and searches through the endpoint with the service-held key, which never reaches a log', async () => {
    const store = join(work, 'remote-store');
    const flags = [...remoteFlags('embed.test'), '--test-resolve', 'embed.test=127.0.0.1', '--test-allow-loopback'];
    const r = await index(SAMPLE, store, flags, HOOKS);
    assert.equal(r.status, 0, r.err);
    assert.equal(JSON.parse(r.out).embedder, `openai:test-embed-64@embed.test:${endpoint.port}`);
    assert.deepEqual(seen[0], { auth: `Bearer ${KEY}`, model: 'test-embed-64', inputs: 5 });
    const svc = await startService('vector', ['--collection', 'sample', '--store', store, ...flags], { sandboxRead: [store], env: HOOKS });
    try {
      const { tools } = await svc.client.listTools();
      assert.equal(tools.find((t) => t.name === 'search')?.annotations?.openWorldHint, true, 'queries leave the machine');
      const hits = results(await svc.call('search', { collection: 'sample', query: 'escalate to the platform team', k: 1, filter: { tag: 'eng' } }));
      assert.equal(hits[0]!.source, '/eng/runbook.md');
      assert.deepEqual(seen.at(-1), { auth: `Bearer ${KEY}`, model: 'test-embed-64', inputs: 1 });
      refuseKey = true;
      const refused = await svc.call('search', { collection: 'sample', query: 'runbook' });
      refuseKey = false;
      assert.equal(errorCode(refused), 'embedder_auth');
      assert.doesNotMatch(resultText(refused), new RegExp(KEY));
    } finally {
      await svc.close();
    }
    assert.doesNotMatch(svc.stderr() + r.err + r.out, new RegExp(KEY), 'the key is in no log line');
  });

  it('refuses an endpoint that resolves to a private address before connecting', async () => {
    const before = endpoint.requests.length;
    const flags = [...remoteFlags('embed.test'), '--test-resolve', 'embed.test=10.0.0.7', '--test-allow-loopback'];
    const r = await index(SAMPLE, join(work, 'ssrf-store'), flags, HOOKS);
    assert.equal(r.status, 2);
    assert.match(r.err, /index failed: embeddings endpoint: URL refused: the host resolves to a non-public address \(private\)/);
    assert.doesNotMatch(r.err, /test-hook: refused connect/, 'refused by the address check, not at connect');
    assert.equal(endpoint.requests.length, before);
  });

  it('refuses the test-only flags without the hook variable', async () => {
    const r = await index(SAMPLE, join(work, 'x'), ['--test-allow-loopback']);
    assert.equal(r.status, 2);
    assert.match(r.err, /test-only: they need MICRO_MCP_VECTOR_TEST_HOOKS=1/);
  });
});

describe('vector: the gateway CLI builds a collection through the service', () => {
  it('micro-mcp vector index DIR writes the store the service then serves', () => {
    const store = join(work, 'cli-store');
    const copy = join(work, 'copy');
    cpSync(SAMPLE, copy, { recursive: true });
    const r = spawnSync(process.execPath, [join(REPO, 'dist', 'src', 'cli', 'main.js'), 'vector', 'index', copy, '--collection', 'sample', '--store', store], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).documents, 5);
    const f = JSON.parse(readFileSync(join(store, 'collection.json'), 'utf8')) as { format: string; documents: { id: string }[] };
    assert.equal(f.format, 'micro-mcp-vector/1');
    assert.deepEqual(f.documents.map((d) => d.id).sort(), [
      '/README.md#0',
      '/eng/architecture.txt#0',
      '/eng/runbook.md#0',
      '/public/faq.md#0',
      '/public/welcome.txt#0',
    ]);
    const bad = spawnSync(process.execPath, [join(REPO, 'dist', 'src', 'cli', 'main.js'), 'vector', 'index', copy, '--collection', 'Bad Name'], {
      encoding: 'utf8',
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--collection NAME is required/);
  });
});
