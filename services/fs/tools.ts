/**
 * The fs tools: read, list, stat, search. All read-only; every path goes through VirtualTree.resolve,
 * and the disk only through OpenDir handles (paths.ts): directories opened relative to their opened
 * parent without following links, never looked up again by name. Nothing in this service opens a
 * file for writing.
 */
import type { BigIntStats, Dirent } from 'node:fs';
import { ToolError } from '../common/tool.js';
import type { ToolDef } from '../common/tool.js';
import { decodeTextOrBinary } from '../common/text.js';
import { OpenDir, specialKind, withDir, withParent } from './paths.js';
import type { Root, VirtualTree } from './paths.js';
import type { FsConfig } from './config.js';
import { checkReach } from './reach.js';

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false } as const;
const PATH_SCHEMA = { type: 'string', minLength: 1, maxLength: 4096, description: 'Path in the virtual tree, e.g. "/docs/a.md" (a leading "/" is optional).' };

type EntryType = 'file' | 'directory' | 'symlink' | 'other';

function entryType(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): EntryType {
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isDirectory()) return 'directory';
  if (st.isFile()) return 'file';
  return 'other';
}

/** Builds the four fs tools over `tree` with the limits from `cfg`. */
export function fsTools(tree: VirtualTree, cfg: FsConfig): ToolDef<never>[] {
  const read: ToolDef<{ path: string; offset?: number; length?: number }> = {
    name: 'read',
    title: 'Read a text file',
    description: `Read a text file (UTF-8). At most ${cfg.maxReadBytes} bytes per call; use offset and length to page through larger files. Binary files are reported, not shown.`,
    annotations: READ_ONLY,
    inputSchema: {
      type: 'object',
      properties: {
        path: PATH_SCHEMA,
        offset: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Byte offset to start at (default 0).' },
        length: { type: 'integer', minimum: 1, maximum: cfg.maxReadBytes, description: `Bytes to read (default and maximum ${cfg.maxReadBytes}).` },
      },
      required: ['path'],
      additionalProperties: false,
    },
    outputSchema: {
      type: 'object',
      properties: {
        path: { type: 'string' },
        size: { type: 'integer' },
        offset: { type: 'integer' },
        bytes_read: { type: 'integer' },
        eof: { type: 'boolean' },
        binary: { type: 'boolean' },
        text: { type: 'string' },
      },
      required: ['path', 'size', 'offset', 'bytes_read', 'eof', 'binary'],
      additionalProperties: false,
    },
    async handler(args, _ctx, grant) {
      const r = tree.resolve(args.path);
      checkReach(r.canonical, grant.reach);
      if (r.kind === 'virtual-root') throw new ToolError('is_directory', 'path is a directory (use list)');
      const { fh, st } = await withParent(r.root, r.segments, async (parent, name) => {
        if (name === undefined) throw new ToolError('is_directory', 'path is a directory (use list)');
        return parent.openFile(name);
      });
      try {
        const size = Number(st.size);
        const offset = args.offset ?? 0;
        const want = Math.min(args.length ?? cfg.maxReadBytes, cfg.maxReadBytes, Math.max(0, size - offset));
        const buf = Buffer.alloc(want);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await fh.read(buf, got, want - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        const data = buf.subarray(0, got);
        const eof = offset + got >= size;
        const text = decodeTextOrBinary(data, 'utf-8', true);
        const base = { path: r.canonical, size, offset, bytes_read: got, eof };
        if (text === undefined) {
          return { text: `binary content (${size} bytes), not shown`, structured: { ...base, binary: true } };
        }
        return { text, structured: { ...base, binary: false, text } };
      } finally {
        await fh.close();
      }
    },
  };

  const list: ToolDef<{ path: string }> = {
    name: 'list',
    title: 'List a directory',
    description: `List the entries of a directory (at most ${cfg.listMaxEntries}). Symbolic links are shown as such and never followed.`,
    annotations: READ_ONLY,
    inputSchema: { type: 'object', properties: { path: PATH_SCHEMA }, required: ['path'], additionalProperties: false },
    outputSchema: {
      type: 'object',
      properties: {
        path: { type: 'string' },
        entries: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              path: { type: 'string' },
              type: { enum: ['file', 'directory', 'symlink', 'other'] },
              size: { type: 'integer' },
            },
            required: ['name', 'path', 'type'],
            additionalProperties: false,
          },
        },
        truncated: { type: 'boolean' },
      },
      required: ['path', 'entries', 'truncated'],
      additionalProperties: false,
    },
    async handler(args, _ctx, grant) {
      const r = tree.resolve(args.path);
      checkReach(r.canonical, grant.reach);
      let entries: { name: string; path: string; type: EntryType; size?: number }[];
      let truncated = false;
      if (r.kind === 'virtual-root') {
        entries = tree.roots.map((root) => ({ name: root.name, path: `/${root.name}`, type: 'directory' as const }));
      } else {
        // Names and sizes come from the opened directory itself (no name lookup to race).
        entries = await withDir(r.root, r.segments, async (dir) => {
          let names = (await dir.names()).sort();
          if (names.length > cfg.listMaxEntries) {
            names = names.slice(0, cfg.listMaxEntries);
            truncated = true;
          }
          const out: { name: string; path: string; type: EntryType; size?: number }[] = [];
          for (const name of names) {
            let st: BigIntStats;
            try {
              st = await dir.lstat(name);
            } catch {
              continue; // vanished meanwhile
            }
            const type = entryType(st);
            out.push({ name, path: tree.childPath(r.canonical, name), type, ...(type === 'file' ? { size: Number(st.size) } : {}) });
          }
          return out;
        });
      }
      const text =
        entries
          .map(
            (e) =>
              `${e.type === 'directory' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' ? 'f' : '?'} ${e.name}${e.size !== undefined ? `  (${e.size} bytes)` : ''}`,
          )
          .join('\n') + (truncated ? '\n(truncated)' : '');
      return { text: text || '(empty directory)', structured: { path: r.canonical, entries, truncated } };
    },
  };

  const stat: ToolDef<{ path: string }> = {
    name: 'stat',
    title: 'Describe a path',
    description: 'Type, size and modification time of a file or directory. Symbolic links are refused.',
    annotations: READ_ONLY,
    inputSchema: { type: 'object', properties: { path: PATH_SCHEMA }, required: ['path'], additionalProperties: false },
    outputSchema: {
      type: 'object',
      properties: { path: { type: 'string' }, type: { enum: ['file', 'directory'] }, size: { type: 'integer' }, modified: { type: 'string' } },
      required: ['path', 'type', 'size', 'modified'],
      additionalProperties: false,
    },
    async handler(args, _ctx, grant) {
      const r = tree.resolve(args.path);
      checkReach(r.canonical, grant.reach);
      if (r.kind === 'virtual-root') {
        return { text: 'directory /', structured: { path: '/', type: 'directory', size: 0, modified: new Date(0).toISOString() } };
      }
      const st = await withParent(r.root, r.segments, (parent, name) => (name === undefined ? parent.stat() : parent.lstat(name)));
      const kind = specialKind(st);
      if (kind) throw new ToolError('special_file', `path refused: ${kind}s are not described`);
      const type = st.isDirectory() ? 'directory' : 'file';
      const out = { path: r.canonical, type, size: Number(st.size), modified: new Date(Number(st.mtimeMs)).toISOString() };
      return { text: `${type} ${out.path}, ${out.size} bytes, modified ${out.modified}`, structured: out };
    },
  };

  const search: ToolDef<{ path: string; query: string; max_results?: number }> = {
    name: 'search',
    title: 'Search names and text',
    description: `Case-insensitive substring search over file names and text content under a directory. Bounded: at most ${cfg.searchMaxFiles} files, ${cfg.searchMaxFileBytes} bytes of each, ${cfg.searchMaxMs} ms; symbolic links and binary files are skipped.`,
    annotations: READ_ONLY,
    inputSchema: {
      type: 'object',
      properties: {
        path: PATH_SCHEMA,
        query: { type: 'string', minLength: 1, maxLength: 256, description: 'Text to find (case-insensitive).' },
        max_results: { type: 'integer', minimum: 1, maximum: 500, description: 'Maximum matches to return (default 50).' },
      },
      required: ['path', 'query'],
      additionalProperties: false,
    },
    outputSchema: {
      type: 'object',
      properties: {
        path: { type: 'string' },
        results: {
          type: 'array',
          items: {
            type: 'object',
            properties: { path: { type: 'string' }, match: { enum: ['name', 'content'] }, line: { type: 'integer' }, snippet: { type: 'string' } },
            required: ['path', 'match'],
            additionalProperties: false,
          },
        },
        files_scanned: { type: 'integer' },
        truncated: { type: 'boolean' },
      },
      required: ['path', 'results', 'files_scanned', 'truncated'],
      additionalProperties: false,
    },
    async handler(args, _ctx, grant) {
      const r = tree.resolve(args.path);
      checkReach(r.canonical, grant.reach);
      const needle = args.query.toLowerCase();
      const max = args.max_results ?? 50;
      const deadline = Date.now() + cfg.searchMaxMs;
      const results: { path: string; match: 'name' | 'content'; line?: number; snippet?: string }[] = [];
      let filesScanned = 0;
      let truncated = false;
      // Work items: a root, its segments below the root dir, the virtual path.
      const stack: { root: Root; segments: string[]; vpath: string }[] = [];
      if (r.kind === 'virtual-root') {
        for (const root of [...tree.roots].reverse()) stack.push({ root, segments: [], vpath: `/${root.name}` });
      } else {
        // Refused here (not skipped below) when the start is no directory or a symlink.
        await withDir(r.root, r.segments, async () => undefined);
        stack.push({ root: r.root, segments: r.segments, vpath: r.canonical });
      }
      outer: while (stack.length > 0) {
        const dir = stack.pop()!;
        if (Date.now() > deadline) {
          truncated = true;
          break;
        }
        let open: OpenDir;
        try {
          open = await OpenDir.open(dir.root, dir.segments);
        } catch {
          continue; // unreadable or swapped: skip silently, never follow
        }
        const subdirs: typeof stack = [];
        try {
          // Entries, and the files scanned, come from this open directory, never by name again.
          let dirents: Dirent[];
          try {
            dirents = await open.entries();
          } catch {
            continue;
          }
          dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          for (const d of dirents) {
            const vpath = dir.vpath === '/' ? `/${d.name}` : `${dir.vpath}/${d.name}`;
            const segments = [...dir.segments, d.name];
            if (d.isSymbolicLink()) continue;
            if (d.name.toLowerCase().includes(needle)) {
              results.push({ path: vpath, match: 'name' });
              if (results.length >= max) {
                truncated = true;
                break outer;
              }
            }
            if (d.isDirectory()) {
              if (segments.length <= 32) subdirs.push({ root: dir.root, segments, vpath });
              continue;
            }
            if (!d.isFile()) continue;
            if (filesScanned >= cfg.searchMaxFiles || Date.now() > deadline) {
              truncated = true;
              break outer;
            }
            filesScanned++;
            const hit = await searchFile(open, d.name, needle, cfg.searchMaxFileBytes);
            if (hit) {
              results.push({ path: vpath, match: 'content', line: hit.line, snippet: hit.snippet });
              if (results.length >= max) {
                truncated = true;
                break outer;
              }
            }
          }
        } finally {
          await open.close();
        }
        stack.push(...subdirs.reverse());
      }
      const text =
        results.length === 0
          ? 'no matches'
          : results.map((m) => (m.match === 'name' ? `${m.path} (name)` : `${m.path}:${m.line}: ${m.snippet}`)).join('\n') + (truncated ? '\n(truncated)' : '');
      return { text, structured: { path: r.canonical, results, files_scanned: filesScanned, truncated } };
    },
  };

  return [read, list, stat, search] as ToolDef<never>[];
}

/** Finds the first line of file `name` of `dir` containing `needle` (lower-case); skips binary and refused files. */
async function searchFile(dir: OpenDir, name: string, needle: string, maxBytes: number): Promise<{ line: number; snippet: string } | undefined> {
  let opened: Awaited<ReturnType<OpenDir['openFile']>>;
  try {
    opened = await dir.openFile(name);
  } catch {
    return undefined;
  }
  try {
    const want = Math.min(Number(opened.st.size), maxBytes);
    const buf = Buffer.alloc(want);
    const { bytesRead } = await opened.fh.read(buf, 0, want, 0);
    const text = decodeTextOrBinary(buf.subarray(0, bytesRead), 'utf-8', true);
    if (text === undefined) return undefined;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const idx = lines[i]!.toLowerCase().indexOf(needle);
      if (idx !== -1) {
        const line = lines[i]!;
        const start = Math.max(0, idx - 80);
        return { line: i + 1, snippet: (start > 0 ? '…' : '') + line.slice(start, start + 200).trim() };
      }
    }
    return undefined;
  } finally {
    await opened.fh.close();
  }
}

/** The health summary exposed as the server's instructions and by --check. */
export function fsInstructions(tree: VirtualTree, cfg: FsConfig): string {
  const roots = tree.roots.length === 1 && tree.roots[0]!.name === '' ? 'one root at "/"' : `roots ${tree.roots.map((r) => `/${r.name}`).join(', ')}`;
  return `micro-mcp fs service (read-only): ${roots}. Tools: read, list, stat, search. Paths are virtual ("docs/a.md" = "/docs/a.md"); ".." , symlinks, encoded tricks and special files are refused. Reads are capped at ${cfg.maxReadBytes} bytes per call. status: ok`;
}
