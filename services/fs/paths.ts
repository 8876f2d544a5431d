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
 * slashes. On disk, nothing is ever looked up by its full path: every directory is opened relative to
 * its already-open parent with O_DIRECTORY|O_NOFOLLOW (OpenDir), and entries are listed, described
 * and opened through that handle; files are opened with O_NOFOLLOW|O_NONBLOCK and the descriptor is
 * verified (same device and inode as the entry checked, a regular file, a single link). So a
 * symlink, FIFO or other directory swapped in at any moment is refused, never followed or blocked on.
 */
import { constants as C, promises as fsp } from 'node:fs';
import type { BigIntStats, Dirent, Stats } from 'node:fs';
import { posix } from 'node:path';
import { ToolError } from '../common/tool.js';

/** A configured root: its virtual name ("" for the single-root form) and its real directory. */
export interface Root {
  name: string;
  dir: string;
}

/** The result of resolving a virtual path. */
export type Resolved =
  | { kind: 'virtual-root'; canonical: '/' } // the "/" listing of named roots
  | { kind: 'real'; canonical: string; root: Root; segments: string[] };

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

  /** Resolves a raw path argument to its root and the segments below it (no disk access yet). */
  resolve(raw: string): Resolved {
    const canonical = canonicalPath(raw);
    const segments = canonical === '/' ? [] : canonical.slice(1).split('/');
    if (!this.named) {
      const root = this.roots[0]!;
      return { kind: 'real', canonical, root, segments };
    }
    if (segments.length === 0) return { kind: 'virtual-root', canonical: '/' };
    const root = this.byName.get(segments[0]!);
    if (!root) throw new ToolError('unknown_root', 'path refused: outside the configured roots (the first segment names no root)');
    const rest = segments.slice(1);
    return { kind: 'real', canonical, root, segments: rest };
  }

  /** Virtual path of a real entry below a resolved directory. */
  childPath(parentCanonical: string, name: string): string {
    return parentCanonical === '/' ? `/${name}` : `${parentCanonical}/${name}`;
  }
}

/**
 * A directory opened without ever following a link: the root is opened with O_DIRECTORY|O_NOFOLLOW,
 * and every component below it relative to its already-open parent (`/proc/self/fd/N/name`, which
 * the kernel resolves from the open directory itself, never by name again). Listing and lookups go
 * through the same handle path, so they reach exactly this directory, whatever is renamed or swapped
 * for a symlink meanwhile: there is no window between a check and its use to race.
 *
 * Needs /proc (Linux) and, under Node's permission model, `--allow-fs-read=/proc/self/fd`.
 */
export class OpenDir {
  private constructor(private readonly fh: fsp.FileHandle) {}

  /** Opens `segments` below `root` component by component (see the class doc). */
  static async open(root: Root, segments: readonly string[]): Promise<OpenDir> {
    let dir: OpenDir;
    try {
      dir = new OpenDir(await fsp.open(root.dir, DIR_FLAGS));
    } catch (e) {
      throw fsError(e);
    }
    for (const [i, seg] of segments.entries()) {
      try {
        const child = await dir.openDir(seg, i === segments.length - 1);
        await dir.close();
        dir = child;
      } catch (e) {
        await dir.close();
        throw e;
      }
    }
    return dir;
  }

  /** The path the kernel resolves to this open directory (valid while it is open). */
  private get path(): string {
    return `/proc/self/fd/${this.fh.fd}`;
  }

  /** The path of entry `name` of this directory (a single component: no "/", ".", ".."). */
  private at(name: string): string {
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new ToolError('bad_name', 'path refused: not a single path component');
    }
    return `${this.path}/${name}`;
  }

  /** This directory's own stats. */
  stat(): Promise<BigIntStats> {
    return this.fh.stat({ bigint: true });
  }

  /** The entry names, from this very directory. */
  async names(): Promise<string[]> {
    try {
      return await fsp.readdir(this.path);
    } catch (e) {
      throw fsError(e);
    }
  }

  /** The entries with their types, from this very directory. */
  async entries(): Promise<Dirent[]> {
    try {
      return await fsp.readdir(this.path, { withFileTypes: true });
    } catch (e) {
      throw fsError(e);
    }
  }

  /** lstat of one entry of this directory (a symlink is described, never followed). */
  async lstat(name: string): Promise<BigIntStats> {
    try {
      return await fsp.lstat(this.at(name), { bigint: true });
    } catch (e) {
      throw fsError(e);
    }
  }

  /**
   * Opens the subdirectory `name` (O_DIRECTORY|O_NOFOLLOW: a symlink or anything else that is not a
   * directory is refused, never followed). `last`: refusals name the entry itself rather than a parent.
   */
  async openDir(name: string, last = true): Promise<OpenDir> {
    const p = this.at(name);
    try {
      return new OpenDir(await fsp.open(p, DIR_FLAGS));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTDIR' && code !== 'ELOOP') throw fsError(e);
      // Say why: O_DIRECTORY|O_NOFOLLOW answers ENOTDIR for a symlink and for a file alike.
      const st = await this.lstat(name);
      if (st.isSymbolicLink()) throw new ToolError('symlink', 'path refused: symbolic links are not followed');
      if (!last) throw new ToolError('not_found', 'not found: a parent is not a directory');
      const kind = specialKind(st);
      throw new ToolError(kind ? 'special_file' : 'not_directory', kind ? `path refused: ${kind}s are not listed` : 'path is not a directory');
    }
  }

  /**
   * Opens the regular file `name` without following a link and verifies the descriptor: the same
   * device and inode as the entry checked first, a regular file, a single link.
   */
  async openFile(name: string): Promise<{ fh: fsp.FileHandle; st: BigIntStats }> {
    const checked = await this.lstat(name);
    const kind = specialKind(checked);
    if (kind) throw new ToolError(kind === 'symbolic link' ? 'symlink' : 'special_file', `path refused: ${kind}s are not read`);
    if (checked.isDirectory()) throw new ToolError('is_directory', 'path is a directory (use list)');
    let fh: fsp.FileHandle;
    try {
      // O_NONBLOCK: a FIFO swapped in after the check must not hang the open.
      fh = await fsp.open(this.at(name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY);
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

  /** Closes the handle; call only once every operation on this directory has settled. */
  async close(): Promise<void> {
    await this.fh.close();
  }
}

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/** Runs `fn` on the open directory `segments` below `root`, closing it afterwards. */
export async function withDir<T>(root: Root, segments: readonly string[], fn: (dir: OpenDir) => Promise<T>): Promise<T> {
  const dir = await OpenDir.open(root, segments);
  try {
    return await fn(dir);
  } finally {
    await dir.close();
  }
}

/**
 * Runs `fn` on the parent directory of `segments` (opened as above) and the final name; `undefined`
 * as the name when `segments` is the root itself.
 */
export function withParent<T>(root: Root, segments: readonly string[], fn: (parent: OpenDir, name: string | undefined) => Promise<T>): Promise<T> {
  const name = segments.at(-1);
  return withDir(root, name === undefined ? segments : segments.slice(0, -1), (dir) => fn(dir, name));
}

/** Maps a file-system error to a ToolError without echoing the path. */
export function fsError(e: unknown): ToolError {
  if (e instanceof ToolError) return e;
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
