/**
 * The fs service's virtual tree and its hardened path resolution.
 *
 * Mapping (the gateway's policy layer computes the same canonical path):
 *   canonical = posix.normalize("/" + path), after the refusals below, with no trailing "/"
 *   one root   (--root DIR):       "/a/b"      -> DIR/a/b
 *   named roots (--root NAME=DIR): "/NAME/a/b" -> DIR/a/b; "/" is a virtual directory of the names
 *
 * Refused before touching the disk: NUL and other control/format characters, backslashes, any ".."
 * segment (even one that would stay inside), percent-encoded sequences (%XX), characters that change
 * under Unicode NFKC normalisation (fullwidth dots and slashes, one-dot leaders, ...) and look-alike
 * slashes. On disk, every component is checked with lstat (symlinks refused, never followed); files
 * are opened with O_NOFOLLOW|O_NONBLOCK and the opened descriptor is verified (same device and inode
 * as the checked path, a regular file, a single link), so a symlink or FIFO swapped in between check
 * and open is refused rather than followed or blocked on.
 */
import { constants as C, promises as fsp } from 'node:fs';
import type { BigIntStats, Stats } from 'node:fs';
import { posix, join } from 'node:path';
import { ToolError } from '../common/tool.js';

/** A configured root: its virtual name ("" for the single-root form) and its real directory. */
export interface Root {
  name: string;
  dir: string;
}

/** The result of resolving a virtual path. */
export type Resolved =
  | { kind: 'virtual-root'; canonical: '/' } // the "/" listing of named roots
  | { kind: 'real'; canonical: string; root: Root; real: string; segments: string[] };

const MAX_PATH_CHARS = 4096;
// Look-alike separators that NFKC leaves alone (division slash, fraction slash, big solidus, ...).
const LOOKALIKES = /[\u2215\u2044\u29F8\u29F9\u2216\uFE68\uFF3C\uFF0F\u3033\u3035]/u;
const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/** Validates a raw tool path argument and returns its canonical virtual form (see module doc). */
export function canonicalPath(raw: string): string {
  if (raw.length > MAX_PATH_CHARS) throw new ToolError('path_too_long', 'path refused: longer than 4096 characters');
  if (raw.includes('\0')) throw new ToolError('nul_byte', 'path refused: contains a NUL byte');
  if (raw.includes('\\')) throw new ToolError('backslash', 'path refused: backslash is not a separator here; use "/"');
  if (/%[0-9a-fA-F]{2}/.test(raw)) throw new ToolError('percent_encoded', 'path refused: percent-encoded sequences (%XX) are not decoded or accepted');
  if (CONTROL_OR_FORMAT.test(raw)) throw new ToolError('control_char', 'path refused: contains control or invisible formatting characters');
  if (LOOKALIKES.test(raw)) throw new ToolError('unicode_lookalike', 'path refused: contains a look-alike slash character');
  if (raw.normalize('NFKC') !== raw)
    throw new ToolError('unicode_unnormalized', 'path refused: not in Unicode NFKC form (e.g. fullwidth or compatibility characters)');
  const parts = raw.split('/');
  if (parts.some((p) => p === '..')) throw new ToolError('dot_dot', 'path refused: ".." segments are not allowed');
  let canonical = posix.normalize(`/${raw}`);
  if (canonical.length > 1 && canonical.endsWith('/')) canonical = canonical.slice(0, -1);
  return canonical;
}

/** The virtual tree over the configured roots. */
export class VirtualTree {
  readonly roots: readonly Root[];
  private readonly named: boolean;
  private readonly byName: Map<string, Root>;

  constructor(roots: readonly Root[]) {
    this.roots = roots;
    this.named = !(roots.length === 1 && roots[0]!.name === '');
    this.byName = new Map(roots.map((r) => [r.name, r]));
  }

  /** Resolves a raw path argument to a root-relative real path (no disk access yet). */
  resolve(raw: string): Resolved {
    const canonical = canonicalPath(raw);
    const segments = canonical === '/' ? [] : canonical.slice(1).split('/');
    if (!this.named) {
      const root = this.roots[0]!;
      return { kind: 'real', canonical, root, real: join(root.dir, ...segments), segments };
    }
    if (segments.length === 0) return { kind: 'virtual-root', canonical: '/' };
    const root = this.byName.get(segments[0]!);
    if (!root) throw new ToolError('unknown_root', 'path refused: outside the configured roots (the first segment names no root)');
    const rest = segments.slice(1);
    return { kind: 'real', canonical, root, real: join(root.dir, ...rest), segments: rest };
  }

  /** Virtual path of a real entry below a resolved directory. */
  childPath(parentCanonical: string, name: string): string {
    return parentCanonical === '/' ? `/${name}` : `${parentCanonical}/${name}`;
  }
}

/**
 * lstat every component from the root down; refuses symlinks anywhere and missing entries.
 * Returns the final component's stats (bigint, for exact inode comparison).
 */
export async function walkNoFollow(root: Root, segments: readonly string[]): Promise<BigIntStats> {
  let cur = root.dir;
  let st = await lstatOrRefuse(cur);
  for (const seg of segments) {
    if (!st.isDirectory()) throw new ToolError('not_found', 'not found: a parent is not a directory');
    cur = join(cur, seg);
    st = await lstatOrRefuse(cur);
    if (st.isSymbolicLink()) throw new ToolError('symlink', 'path refused: symbolic links are not followed');
  }
  return st;
}

async function lstatOrRefuse(p: string): Promise<BigIntStats> {
  try {
    return await fsp.lstat(p, { bigint: true });
  } catch (e) {
    throw fsError(e);
  }
}

/** Maps a file-system error to a ToolError without echoing the path. */
export function fsError(e: unknown): ToolError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new ToolError('not_found', 'not found');
    case 'ELOOP':
    case 'EMLINK':
      return new ToolError('symlink', 'path refused: symbolic links are not followed');
    case 'EACCES':
    case 'EPERM':
    case 'ERR_ACCESS_DENIED':
      return new ToolError('access_denied', 'access denied');
    case 'ENAMETOOLONG':
      return new ToolError('path_too_long', 'path refused: name too long');
    default:
      return new ToolError('io_error', 'file system error');
  }
}

/** Describes a non-regular, non-directory entry type for clear refusals. */
export function specialKind(st: Stats | BigIntStats): string | undefined {
  if (st.isFIFO()) return 'FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device file';
  if (st.isSocket()) return 'socket';
  if (st.isSymbolicLink()) return 'symbolic link';
  return undefined;
}

/** Opens a checked regular file without following links and verifies the descriptor. */
export async function openVerifiedFile(root: Root, real: string, segments: readonly string[]): Promise<{ fh: fsp.FileHandle; st: BigIntStats }> {
  const checked = await walkNoFollow(root, segments);
  const kind = specialKind(checked);
  if (kind) throw new ToolError('special_file', `path refused: ${kind}s are not read`);
  if (checked.isDirectory()) throw new ToolError('is_directory', 'path is a directory (use list)');
  let fh: fsp.FileHandle;
  try {
    // O_NONBLOCK: a FIFO swapped in after the check must not hang the open.
    fh = await fsp.open(real, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY);
  } catch (e) {
    throw fsError(e);
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (st.dev !== checked.dev || st.ino !== checked.ino) throw new ToolError('swapped', 'path refused: the file changed between check and open');
    const k = specialKind(st);
    if (k || !st.isFile()) throw new ToolError('special_file', `path refused: ${k ?? 'non-regular file'}s are not read`);
    // A second hard link may be a link to a file outside the roots (same file system): refuse.
    if (st.nlink > 1n) throw new ToolError('hardlink', 'path refused: files with several hard links are not read');
    return { fh, st };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Checks a directory path (no links) and returns its stats; verified again after listing. */
export async function checkDirectory(root: Root, segments: readonly string[]): Promise<BigIntStats> {
  const st = await walkNoFollow(root, segments);
  if (!st.isDirectory()) {
    const kind = specialKind(st);
    throw new ToolError(kind ? 'special_file' : 'not_directory', kind ? `path refused: ${kind}s are not listed` : 'path is not a directory');
  }
  return st;
}
