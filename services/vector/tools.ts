/**
 * The vector tools over one collection: search {collection, query, k?, filter?}, get {collection, id,
 * filter?} and, only with --allow-writes, upsert {collection, id, text, source?, tags?, title?}.
 * `collection` must be this instance's collection (the input schema says so with `const`): it is an
 * argument so that policies decide on it as a resource fact, like `filter.tag`. A tag filter is
 * enforced here too: search returns only documents carrying the tag, get answers "not found" for a
 * document without it, so a policy that allows a call for one tag lets it see that tag alone.
 */
import type { ToolDef } from '../common/tool.js';
import { ToolError } from '../common/tool.js';
import type { VectorConfig } from './config.js';
import type { Embedder } from './embedder.js';
import type { Filter, VectorStore } from './store.js';

const TAG = {
  type: 'string',
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$',
  description: 'A tag (for indexed folders: the top-level folder name, e.g. "eng").',
};
const DOC_ID = { type: 'string', minLength: 1, maxLength: 512, pattern: '^[^\\u0000-\\u001f\\u007f]+$' };
const SOURCE = { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[^\\u0000-\\u001f\\u007f]+$' };

const docOut = {
  id: { type: 'string' },
  source: { type: 'string' },
  tags: { type: 'array', items: { type: 'string' } },
  title: { type: 'string' },
  text: { type: 'string' },
  truncated: { type: 'boolean' },
};

/** Cuts `text` to at most `maxChars` characters and `maxBytes` UTF-8 bytes (never inside a surrogate pair). */
function cut(text: string, maxChars: number, maxBytes: number): { text: string; truncated: boolean } {
  let t = text.length > maxChars ? text.slice(0, maxChars) : text;
  if (Buffer.byteLength(t) > maxBytes) {
    // Binary search on the character count: the longest prefix within the byte budget.
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (Buffer.byteLength(t.slice(0, mid)) <= maxBytes) lo = mid;
      else hi = mid - 1;
    }
    t = t.slice(0, lo);
  }
  if (t.length > 0 && /[\uD800-\uDBFF]/.test(t[t.length - 1]!)) t = t.slice(0, -1);
  return { text: t, truncated: t.length < text.length };
}

function filterOf(f: { tag?: string; source?: string } | undefined): Filter {
  const out: Filter = {};
  if (f?.tag !== undefined) out.tag = f.tag;
  if (f?.source !== undefined) out.source = f.source;
  return out;
}

/** Builds the vector tools (upsert only when writes are enabled). */
export function vectorTools(store: VectorStore, embedder: Embedder, cfg: VectorConfig): ToolDef<never>[] {
  const collection = { const: cfg.collection, description: `The collection: "${cfg.collection}" (the only one this service serves).` };
  const openWorld = cfg.embedder.kind !== 'local'; // a remote embedder sees every query

  const search: ToolDef<{ collection: string; query: string; k?: number; filter?: { tag?: string; source?: string } }> = {
    name: 'search',
    title: 'Semantic search',
    description: `Find the documents of collection "${cfg.collection}" most similar to a query (cosine over ${embedder.id} embeddings), best first; at most ${cfg.maxK} results and ${cfg.maxResultBytes} bytes of text. Filter by a tag and/or an exact source.`,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: openWorld },
    inputSchema: {
      type: 'object',
      properties: {
        collection,
        query: { type: 'string', minLength: 1, maxLength: cfg.maxQueryChars, description: 'What to look for, in words.' },
        k: { type: 'integer', minimum: 1, maximum: cfg.maxK, description: `How many results (default ${Math.min(5, cfg.maxK)}, at most ${cfg.maxK}).` },
        filter: {
          type: 'object',
          properties: { tag: TAG, source: { ...SOURCE, description: 'Only chunks of this source (e.g. "/eng/runbook.md").' } },
          additionalProperties: false,
        },
      },
      required: ['collection', 'query'],
      additionalProperties: false,
    },
    outputSchema: {
      type: 'object',
      properties: {
        collection: { type: 'string' },
        embedder: { type: 'string' },
        results: {
          type: 'array',
          items: {
            type: 'object',
            properties: { ...docOut, score: { type: 'number' } },
            required: ['id', 'score', 'source', 'tags', 'title', 'text', 'truncated'],
            additionalProperties: false,
          },
        },
        truncated: { type: 'boolean' },
      },
      required: ['collection', 'embedder', 'results', 'truncated'],
      additionalProperties: false,
    },
    async handler(args) {
      const [vector] = await embedder.embed([args.query]);
      if (vector === undefined || vector.every((x) => x === 0)) throw new ToolError('empty_query', 'the query has no words to search for');
      const hits = await store.search(vector, args.k ?? Math.min(5, cfg.maxK), filterOf(args.filter), cfg.minScore);
      let budget = cfg.maxResultBytes;
      let truncated = false;
      const results = hits.map((h) => {
        const c = cut(h.doc.text, cfg.maxSnippetChars, budget);
        budget -= Buffer.byteLength(c.text);
        truncated ||= c.truncated;
        return {
          id: h.doc.id,
          score: Math.round(h.score * 1e6) / 1e6,
          source: h.doc.source,
          tags: h.doc.tags,
          title: h.doc.title,
          text: c.text,
          truncated: c.truncated,
        };
      });
      const lines = results.map((r, i) => `${i + 1}. [${r.score.toFixed(3)}] ${r.source} (${r.id})\n${r.text}`);
      return {
        text: results.length === 0 ? 'no matching documents' : lines.join('\n\n'),
        structured: { collection: cfg.collection, embedder: embedder.id, results, truncated },
      };
    },
  };

  const get: ToolDef<{ collection: string; id: string; filter?: { tag?: string } }> = {
    name: 'get',
    title: 'Get a document',
    description: `Get one document of collection "${cfg.collection}" by id (as search returns it), at most ${cfg.maxResultBytes} bytes of text. With filter.tag, only a document carrying that tag.`,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    inputSchema: {
      type: 'object',
      properties: {
        collection,
        id: DOC_ID,
        filter: { type: 'object', properties: { tag: TAG }, additionalProperties: false },
      },
      required: ['collection', 'id'],
      additionalProperties: false,
    },
    outputSchema: {
      type: 'object',
      properties: { ...docOut, chars: { type: 'integer' } },
      required: ['id', 'source', 'tags', 'title', 'text', 'truncated', 'chars'],
      additionalProperties: false,
    },
    async handler(args) {
      const doc = store.get(args.id);
      // The same answer for "absent" and "not carrying the tag": a tag-bound caller learns nothing of other tags.
      if (doc === undefined || (args.filter?.tag !== undefined && !doc.tags.includes(args.filter.tag)))
        throw new ToolError('not_found', 'no such document in this collection');
      const c = cut(doc.text, doc.text.length, cfg.maxResultBytes);
      return {
        text: `${doc.source} (${doc.id})\n\n${c.text}`,
        structured: { id: doc.id, source: doc.source, tags: doc.tags, title: doc.title, text: c.text, truncated: c.truncated, chars: doc.text.length },
      };
    },
  };

  const upsert: ToolDef<{ collection: string; id: string; text: string; source?: string; tags?: string[]; title?: string }> = {
    name: 'upsert',
    title: 'Add or replace a document',
    description: `Add a document to collection "${cfg.collection}", or replace the one with the same id (embedded with ${embedder.id}); at most ${cfg.maxDocChars} characters.`,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: openWorld },
    inputSchema: {
      type: 'object',
      properties: {
        collection,
        id: DOC_ID,
        text: { type: 'string', minLength: 1, maxLength: cfg.maxDocChars },
        source: SOURCE,
        tags: { type: 'array', items: TAG, maxItems: 8, uniqueItems: true },
        title: { type: 'string', maxLength: 256 },
      },
      required: ['collection', 'id', 'text'],
      additionalProperties: false,
    },
    outputSchema: {
      type: 'object',
      properties: { id: { type: 'string' }, result: { enum: ['created', 'updated'] }, documents: { type: 'integer' } },
      required: ['id', 'result', 'documents'],
      additionalProperties: false,
    },
    async handler(args) {
      if (store.get(args.id) === undefined && store.size >= cfg.maxDocuments)
        throw new ToolError('collection_full', `the collection holds its maximum of ${cfg.maxDocuments} documents`);
      const [vector] = await embedder.embed([args.text]);
      const result = await store.put({ id: args.id, text: args.text, source: args.source ?? args.id, tags: args.tags ?? [], title: args.title ?? '' }, vector!);
      try {
        await store.persist();
      } catch {
        throw new ToolError('store_write', 'the document is served until restart but could not be saved to the store');
      }
      return { text: `${result} ${args.id}`, structured: { id: args.id, result, documents: store.size } };
    },
  };

  return (cfg.allowWrites ? [search, get, upsert] : [search, get]) as ToolDef<never>[];
}

/** The health summary exposed as the server's instructions and by --check. */
export function vectorInstructions(store: VectorStore, embedder: Embedder, cfg: VectorConfig): string {
  return `micro-mcp vector service (${cfg.allowWrites ? 'read-write' : 'read-only'}): collection "${cfg.collection}" with ${store.size} documents; embedder ${embedder.id}; tools search, get${cfg.allowWrites ? ', upsert' : ''}. status: ok`;
}
