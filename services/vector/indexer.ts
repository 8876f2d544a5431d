/**
 * `--index DIR`: builds a collection from the text files under a folder (what `micro-mcp vector index`
 * runs). Each file is split into chunks of about CHUNK_CHARS characters at paragraph, then line,
 * then word boundaries; a chunk's id is `<path>#<n>`, its source the file's path relative to DIR with
 * a leading "/" (the fs service's canonical form), its tag the file's top-level folder (`eng` for
 * /eng/runbook.md; none for files directly in DIR), its title the file name.
 *
 * Symlinks, special files, hidden names (".x") and binary content (NUL or invalid UTF-8) are skipped;
 * --max-files and --max-file-bytes bound the walk. The collection is written only when the walk and
 * every embedding succeeded (atomically), so a failed run leaves the previous collection in place.
 */
import { lstat, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeTextOrBinary } from '../common/text.js';
import type { VectorConfig } from './config.js';
import { EMBED_BATCH } from './embedder.js';
import type { Embedder } from './embedder.js';
import { VectorStore } from './store.js';
import type { VectorDocument } from './store.js';

export const CHUNK_CHARS = 800;

/** Splits text into chunks of at most `max` characters, preferring paragraph, line, then word breaks. */
export function chunkText(text: string, max = CHUNK_CHARS): string[] {
  const out: string[] = [];
  let rest = text.replace(/\r\n?/g, '\n').trim();
  while (rest.length > max) {
    const window = rest.slice(0, max + 1);
    let cut = window.lastIndexOf('\n\n');
    if (cut < max / 2) cut = window.lastIndexOf('\n');
    if (cut < max / 2) cut = window.lastIndexOf(' ');
    if (cut < max / 2) cut = max;
    out.push(rest.slice(0, cut).trim());
    rest = rest.slice(cut).trim();
  }
  if (rest.length > 0) out.push(rest);
  return out.filter((c) => c.length > 0);
}

interface Found {
  rel: string;
  abs: string;
}

/** Lists regular files below `root` (no symlinks followed), sorted, at most `maxFiles`. */
async function walk(root: string, maxFiles: number): Promise<{ files: Found[]; skipped: number }> {
  const files: Found[] = [];
  let skipped = 0;
  const stack: string[] = [''];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const entries = (await readdir(join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? 1 : -1));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const childRel = `${rel}/${e.name}`;
      if (e.isDirectory()) stack.push(childRel);
      else if (e.isFile()) {
        if (files.length >= maxFiles) throw new Error(`more than --max-files ${maxFiles} files under the folder`);
        files.push({ rel: childRel, abs: join(root, childRel) });
      } else skipped++; // symlinks, FIFOs, sockets, devices
    }
  }
  files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return { files, skipped };
}

/** Reads at most `max` bytes of a regular file without following a symlink swapped in meanwhile. */
async function readHead(abs: string, max: number): Promise<Buffer | undefined> {
  const st = await lstat(abs);
  if (!st.isFile()) return undefined;
  const fh = await open(abs, 'r');
  try {
    const again = await fh.stat();
    if (again.ino !== st.ino || again.dev !== st.dev) return undefined;
    const buf = Buffer.alloc(Math.min(max, again.size));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** What an index run did, printed as one JSON line. */
export interface IndexReport {
  status: 'ok';
  collection: string;
  store: string;
  embedder: string;
  files: number;
  documents: number;
  skipped: number;
}

/** Builds the collection from `cfg.indexDir` into `cfg.store`. */
export async function buildIndex(cfg: VectorConfig, embedder: Embedder): Promise<IndexReport> {
  const root = cfg.indexDir!;
  const { files, skipped: special } = await walk(root, cfg.maxFiles);
  const docs: VectorDocument[] = [];
  let skipped = special;
  for (const f of files) {
    const buf = await readHead(f.abs, cfg.maxFileBytes);
    const text = buf === undefined ? undefined : decodeTextOrBinary(buf, 'utf-8', buf.length === cfg.maxFileBytes);
    if (text === undefined) {
      skipped++;
      continue;
    }
    const parts = f.rel.split('/').filter((p) => p !== '');
    const tags = parts.length > 1 ? [parts[0]!] : [];
    const title = parts[parts.length - 1]!;
    chunkText(text.slice(0, cfg.maxDocChars * 64)).forEach((chunk, n) => {
      docs.push({ id: `${f.rel}#${n}`, text: chunk.slice(0, cfg.maxDocChars), source: f.rel, tags, title });
    });
    if (docs.length > cfg.maxDocuments) throw new Error(`more than --max-documents ${cfg.maxDocuments} chunks`);
  }
  if (docs.length === 0) throw new Error('no text files under the folder');
  const vectors: Float32Array[] = [];
  for (let i = 0; i < docs.length; i += EMBED_BATCH) vectors.push(...(await embedder.embed(docs.slice(i, i + EMBED_BATCH).map((d) => d.text))));
  const store = VectorStore.empty(cfg.store, cfg.collection, { id: embedder.id, dims: embedder.dims });
  for (const [i, d] of docs.entries()) await store.put(d, vectors[i]!);
  await store.persist();
  return { status: 'ok', collection: cfg.collection, store: cfg.store, embedder: embedder.id, files: files.length, documents: docs.length, skipped };
}
