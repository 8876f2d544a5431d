/**
 * The policy compile cache: what a start-up or reload would compute from unchanged sources (the
 * Rego WASM bundle from `opa check` + `opa build`; the Cedar set's parts, ids and messages after
 * strict validation) is kept on disk under a sha256 of everything that produced it (the sources, the
 * input schema, the declared fact names, the opa binary or the cedar-wasm version). Measured on 2
 * cores: a cold Cedar load ~1.5 s (schema parse, per-policy JSON, strict validation in WASM), opa
 * check + build ~250 ms; with a hit both are a file read and a pre-parse.
 *
 * Only a set that compiled and validated is written; an entry is read back only from a directory
 * this user owns that no one else may write (an entry is trusted as validated), and any problem
 * with the cache (unreadable, corrupt, not writable) means compiling as if there were none.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { PolicyLogger } from './types.js';

/** $XDG_CACHE_HOME/micro-mcp/policy, else ~/.cache/micro-mcp/policy. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME !== undefined && env.XDG_CACHE_HOME !== '' ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'micro-mcp', 'policy');
}

export class CompileCache {
  readonly dir: string;
  readonly #log: PolicyLogger | undefined;

  private constructor(dir: string, log: PolicyLogger | undefined) {
    this.dir = dir;
    this.#log = log;
  }

  /**
   * The cache in `dir` (created 0700), or null, with a warning, when it cannot be used safely: not a
   * directory, owned by another user, or writable by group or others.
   */
  static open(dir: string, log?: PolicyLogger): CompileCache | null {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = statSync(dir);
      const uid = process.getuid?.();
      if (!st.isDirectory()) throw new Error('not a directory');
      if (uid !== undefined && st.uid !== uid) throw new Error('owned by another user');
      if ((st.mode & 0o022) !== 0) throw new Error('writable by group or others');
    } catch (e) {
      log?.warn({ dir, reason: e instanceof Error ? e.message : String(e) }, 'policy compile cache not used; compiling every time');
      return null;
    }
    return new CompileCache(dir, log);
  }

  /** The key of an entry: sha256 over the parts, each length-prefixed so no two part lists collide. */
  static key(parts: ReadonlyArray<string | Uint8Array>): string {
    const h = createHash('sha256');
    for (const p of parts) {
      const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
      h.update(`${b.length}:`).update(b);
    }
    return h.digest('hex');
  }

  #file(kind: string, key: string): string {
    return join(this.dir, `${kind}-${key}`);
  }

  /** The entry, or null when there is none or it cannot be read. */
  async get(kind: string, key: string): Promise<Buffer | null> {
    try {
      return await readFile(this.#file(kind, key));
    } catch {
      return null;
    }
  }

  /** Writes an entry atomically (a temp file renamed into place); a failure is logged, never thrown. */
  async put(kind: string, key: string, data: Uint8Array): Promise<void> {
    const tmp = join(this.dir, `.tmp-${randomUUID()}`);
    try {
      await writeFile(tmp, data, { mode: 0o600 });
      await rename(tmp, this.#file(kind, key));
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      this.#log?.warn({ dir: this.dir, reason: (e as NodeJS.ErrnoException).code ?? 'error' }, 'policy compile cache entry not written');
    }
  }
}
