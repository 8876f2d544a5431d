/**
 * Embedders: text -> unit vectors. Pluggable; a collection remembers which one built it (its `id` and
 * `dims`), and the service refuses to serve a collection with another.
 *
 * `local-hash-v1` (the default) is feature hashing, no model and no network: the text is NFKC-folded
 * and lower-cased; every word (runs of letters and digits), every pair of adjacent words and every
 * character trigram of each padded word is hashed (FNV-1a) to one of 512 dimensions with a hashed
 * sign; counts are damped (1 + ln tf) and the vector is L2-normalised. Its quality is lexical: a
 * document scores high when it shares words, word pairs or word pieces with the query (trigrams make it
 * tolerant of inflections and typos), but it knows no meaning: "car" does not find "automobile", and
 * unrelated texts that share common words score above zero. Good for keyword-like lookups over a
 * small collection and for tests; use an embeddings endpoint for semantic search.
 *
 * `openai`: any OpenAI-compatible `POST /v1/embeddings` ({model, input: [..]} -> {data: [{index,
 * embedding}]}), reached through the shared SSRF guard and limited to that one host and port; the
 * API key is the service's own (a secret reference) and is sent only there.
 */
import { GuardedNet, readCapped } from '../common/guarded-net.js';
import { ToolError } from '../common/tool.js';
import type { EmbedderConfig } from './config.js';

export interface Embedder {
  /** Identifies the embedding space: a collection built by one embedder is only searched by the same. */
  readonly id: string;
  /** Vector length; 0 until a remote embedder has answered once. */
  readonly dims: number;
  /** Embeds texts, in order; every vector has length `dims` and norm 1 (or 0 for an empty text). */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
}

const LOCAL_DIMS = 512;

/** FNV-1a over UTF-16 code units, seeded: fast and stable across machines. */
function fnv1a(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The local hashed n-gram embedding of one text (see the module comment). */
export function localEmbedding(text: string, dims = LOCAL_DIMS): Float32Array {
  const counts = new Map<string, number>();
  const add = (feature: string, w: number) => counts.set(feature, (counts.get(feature) ?? 0) + w);
  const words =
    text
      .normalize('NFKC')
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu) ?? [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    add(`w:${w}`, 1);
    if (i > 0) add(`b:${words[i - 1]} ${w}`, 0.5);
    const padded = ` ${w} `;
    // A word's trigrams together weigh as much as the word (norm 1), so long words do not drown short
    // ones and a shared stem counts about as much as a shared word.
    const grams = padded.length - 2;
    for (let j = 0; j < grams; j++) add(`t:${padded.slice(j, j + 3)}`, 1 / Math.sqrt(grams));
  }
  const v = new Float32Array(dims);
  for (const [feature, tf] of counts) {
    const h = fnv1a(feature, 0);
    const sign = fnv1a(feature, 0x9e3779b9) & 1 ? 1 : -1;
    v[h % dims]! += sign * (tf <= 1 ? tf : 1 + Math.log(tf));
  }
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < dims; i++) v[i]! /= norm;
  return v;
}

/** The built-in embedder: no model, no network. */
export function localEmbedder(): Embedder {
  return {
    id: 'local-hash-v1',
    dims: LOCAL_DIMS,
    embed: async (texts) => texts.map((t) => localEmbedding(t)),
  };
}

/** Largest embeddings answer read (a batch of 64 vectors of 3072 floats as JSON is about 4 MiB). */
const MAX_EMBED_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Texts per request when indexing. */
export const EMBED_BATCH = 64;

/** An OpenAI-compatible embeddings endpoint, reached under the SSRF guard. */
export function remoteEmbedder(cfg: Extract<EmbedderConfig, { kind: 'openai' }>): Embedder {
  const net = new GuardedNet(cfg.test);
  const url = cfg.url;
  let dims = 0;
  const self: Embedder = {
    id: `openai:${cfg.model}@${url.host}`,
    get dims() {
      return dims;
    },
    async embed(texts) {
      if (texts.length === 0) return [];
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), cfg.timeoutMs);
      try {
        const body = JSON.stringify({ model: cfg.model, input: texts });
        // The configured endpoint is the only place this client goes: no redirect is followed.
        const res = await net.send({
          url,
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            accept: 'application/json',
            authorization: `Bearer ${cfg.key}`,
            'user-agent': 'micro-mcp-vector/0.1',
          },
          body,
          signal: ac.signal,
        });
        const status = res.statusCode ?? 0;
        const raw = await readCapped(res, MAX_EMBED_RESPONSE_BYTES, ac.signal);
        if (status === 401 || status === 403) throw new ToolError('embedder_auth', `the embeddings endpoint refused the service's key (HTTP ${status})`);
        if (status === 429) throw new ToolError('embedder_rate_limited', 'the embeddings endpoint is rate limiting this service; try again later');
        if (status < 200 || status > 299) throw new ToolError('embedder_error', `the embeddings endpoint answered HTTP ${status}`);
        return parseEmbeddings(raw, texts.length, (n) => {
          if (dims === 0) dims = n;
          return n === dims;
        });
      } catch (e) {
        if (e instanceof ToolError) {
          if (ac.signal.aborted && e.code !== 'too_large')
            throw new ToolError('embedder_timeout', `the embeddings endpoint did not answer within ${cfg.timeoutMs} ms`);
          throw e.code.startsWith('embedder_') ? e : new ToolError(`embedder_${e.code}`, `embeddings endpoint: ${e.message}`);
        }
        throw new ToolError('embedder_error', 'the embeddings request failed');
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return self;
}

/** Reads {data: [{index, embedding}]}: one finite vector per text, each of the expected length, normalised here. */
function parseEmbeddings(raw: Buffer, n: number, dimsOk: (len: number) => boolean): Float32Array[] {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new ToolError('embedder_error', 'the embeddings endpoint answered something other than JSON');
  }
  const data = typeof doc === 'object' && doc !== null ? (doc as { data?: unknown }).data : undefined;
  if (!Array.isArray(data) || data.length !== n) throw new ToolError('embedder_error', 'the embeddings answer does not hold one vector per text');
  const out: Float32Array[] = new Array(n);
  for (const item of data) {
    const index = (item as { index?: unknown }).index;
    const emb = (item as { embedding?: unknown }).embedding;
    if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= n || out[index as number] !== undefined)
      throw new ToolError('embedder_error', 'the embeddings answer has a bad index');
    if (!Array.isArray(emb) || emb.length === 0 || !emb.every((x) => typeof x === 'number' && Number.isFinite(x)))
      throw new ToolError('embedder_error', 'the embeddings answer has a malformed vector');
    if (!dimsOk(emb.length)) throw new ToolError('embedder_error', 'the embeddings endpoint changed its vector length');
    const v = Float32Array.from(emb as number[]);
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    if (norm > 0) for (let i = 0; i < v.length; i++) v[i]! /= norm;
    out[index as number] = v;
  }
  return out;
}

/** The embedder the configuration names. */
export function createEmbedder(cfg: EmbedderConfig): Embedder {
  return cfg.kind === 'local' ? localEmbedder() : remoteEmbedder(cfg);
}
