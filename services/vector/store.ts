/**
 * One collection: documents with their vectors and metadata (source, tags, title) in an embedded
 * Orama database (@orama/orama: pure TypeScript, in process, no native code) for exact cosine search
 * with metadata filters, persisted as one versioned file `<store>/collection.json` that this service
 * alone reads and writes (`micro-mcp vector index` runs this service's own `--index` mode to build
 * it, so the format is never shared with the gateway):
 *
 *   { format: "micro-mcp-vector/1", collection, embedder: {id, dims}, documents: [
 *       { id, text, source, tags: [..], title, vector: base64 of little-endian float32 } ] }
 *
 * A write (upsert) rewrites the file whole, atomically (a temporary file renamed over it): simple,
 * and right for the collection sizes one instance serves (bounded by --max-documents).
 */
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { count, create, insert, remove, search } from '@orama/orama';
import { ToolError } from '../common/tool.js';

export const STORE_FORMAT = 'micro-mcp-vector/1';
export const STORE_FILE = 'collection.json';

/** One stored document (a chunk of a source file, or an upserted text). */
export interface VectorDocument {
  id: string;
  text: string;
  /** Where it came from: a file's path relative to the indexed folder ("/eng/runbook.md"), or a caller's label. */
  source: string;
  tags: string[];
  title: string;
}

/** One search hit. */
export interface Hit {
  doc: VectorDocument;
  score: number;
}

/** Metadata filters: a tag the document carries, and/or its exact source. */
export interface Filter {
  tag?: string;
  source?: string;
}

interface StoredDocument extends VectorDocument {
  vector: string;
}

interface StoreFile {
  format: string;
  collection: string;
  embedder: { id: string; dims: number };
  documents: StoredDocument[];
}

function encodeVector(v: Float32Array): string {
  const buf = Buffer.alloc(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString('base64');
}

function decodeVector(s: string, dims: number): Float32Array {
  const buf = Buffer.from(s, 'base64');
  if (buf.length !== dims * 4) throw new Error('a stored vector has the wrong length');
  const v = new Float32Array(dims);
  for (let i = 0; i < dims; i++) v[i] = buf.readFloatLE(i * 4);
  return v;
}

const isStr = (v: unknown): v is string => typeof v === 'string';

/** Reads and checks a store file; throws Error with an operator-facing message. */
function readStoreFile(path: string): StoreFile {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT' ? `no collection at ${path}: build it with \`micro-mcp vector index\`` : `the collection file cannot be read (${code ?? 'not JSON'})`,
    );
  }
  const f = doc as Partial<StoreFile>;
  if (f.format !== STORE_FORMAT) throw new Error(`the collection file is not ${STORE_FORMAT}`);
  if (!isStr(f.collection) || typeof f.embedder !== 'object' || !isStr(f.embedder?.id) || !Number.isInteger(f.embedder?.dims) || !Array.isArray(f.documents))
    throw new Error('the collection file is malformed');
  for (const d of f.documents) {
    if (!isStr(d.id) || !isStr(d.text) || !isStr(d.source) || !isStr(d.title) || !Array.isArray(d.tags) || !d.tags.every(isStr) || !isStr(d.vector))
      throw new Error('the collection file holds a malformed document');
  }
  return f as StoreFile;
}

/** An open collection: the Orama database plus what persisting it needs. */
export class VectorStore {
  readonly collection: string;
  readonly embedderId: string;
  readonly dims: number;
  private readonly dir: string;
  private readonly db;
  /** Documents and vectors by id: what get answers and persist writes (Orama indexes the vector and the filter fields). */
  private readonly docs = new Map<string, { doc: VectorDocument; vector: Float32Array }>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(dir: string, collection: string, embedder: { id: string; dims: number }) {
    this.dir = dir;
    this.collection = collection;
    this.embedderId = embedder.id;
    this.dims = embedder.dims;
    // `enum` fields filter exactly (eq, in, containsAll); nothing is full-text indexed: search is by vector.
    this.db = create({ schema: { source: 'enum', tags: 'enum[]', embedding: `vector[${embedder.dims}]` } as const });
  }

  /** An empty collection (index mode, before documents are added). */
  static empty(dir: string, collection: string, embedder: { id: string; dims: number }): VectorStore {
    return new VectorStore(dir, collection, embedder);
  }

  /** Opens `<dir>/collection.json`; refuses another collection's file or another embedder's vectors. */
  static async open(dir: string, collection: string, embedder: { id: string; dims: number }): Promise<VectorStore> {
    const f = readStoreFile(join(dir, STORE_FILE));
    if (f.collection !== collection) throw new Error(`the store holds collection "${f.collection}", not "${collection}"`);
    if (f.embedder.id !== embedder.id || (embedder.dims !== 0 && f.embedder.dims !== embedder.dims))
      throw new Error(`the collection was built with embedder ${f.embedder.id} (${f.embedder.dims} dimensions), this service uses ${embedder.id}: rebuild it`);
    const store = new VectorStore(dir, collection, f.embedder);
    for (const d of f.documents)
      await store.put({ id: d.id, text: d.text, source: d.source, tags: d.tags, title: d.title }, decodeVector(d.vector, f.embedder.dims));
    return store;
  }

  get size(): number {
    return count(this.db);
  }

  /** Adds or replaces a document in memory. */
  async put(doc: VectorDocument, vector: Float32Array): Promise<'created' | 'updated'> {
    if (vector.length !== this.dims) throw new ToolError('embedder_error', 'the embedding has the wrong length for this collection');
    const existed = this.docs.has(doc.id);
    if (existed) await remove(this.db, doc.id);
    // Orama takes ownership of the object it is given (it may rewrite the vector field), so it gets a fresh one.
    await insert(this.db, { id: doc.id, source: doc.source, tags: [...doc.tags], embedding: Array.from(vector) });
    this.docs.set(doc.id, { doc: { ...doc, tags: [...doc.tags] }, vector });
    return existed ? 'updated' : 'created';
  }

  /** The stored document `id`, or undefined. */
  get(id: string): VectorDocument | undefined {
    const d = this.docs.get(id)?.doc;
    return d === undefined ? undefined : { ...d, tags: [...d.tags] };
  }

  /** The `k` documents most similar to `vector` (cosine, exact) that pass `filter`, best first. */
  async search(vector: Float32Array, k: number, filter: Filter, minScore: number): Promise<Hit[]> {
    if (vector.length !== this.dims) throw new ToolError('embedder_error', 'the embedding has the wrong length for this collection');
    const where: Record<string, unknown> = {};
    if (filter.tag !== undefined) where.tags = { containsAll: [filter.tag] };
    if (filter.source !== undefined) where.source = { eq: filter.source };
    const res = await search(this.db, {
      mode: 'vector',
      vector: { value: Array.from(vector), property: 'embedding' },
      similarity: minScore,
      limit: k,
      includeVectors: false,
      ...(Object.keys(where).length > 0 ? { where } : {}),
    });
    const hits: Hit[] = [];
    for (const h of res.hits) {
      const doc = this.get(String(h.id));
      if (doc !== undefined) hits.push({ doc, score: h.score });
    }
    return hits;
  }

  /** Writes the whole collection to `<dir>/collection.json`, atomically; writes are serialised. */
  persist(): Promise<void> {
    const run = async () => {
      const documents: StoredDocument[] = [];
      for (const { doc, vector } of this.docs.values()) documents.push({ ...doc, vector: encodeVector(vector) });
      const file: StoreFile = { format: STORE_FORMAT, collection: this.collection, embedder: { id: this.embedderId, dims: this.dims }, documents };
      await mkdir(this.dir, { recursive: true });
      const target = join(this.dir, STORE_FILE);
      const tmp = `${target}.tmp-${process.pid}`;
      await writeFile(tmp, JSON.stringify(file));
      await rename(tmp, target);
    };
    const next = this.writing.then(run, run);
    this.writing = next.catch(() => undefined);
    return next;
  }
}
