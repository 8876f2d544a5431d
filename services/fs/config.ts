/**
 * fs service configuration from command-line flags (documented in services/README.md).
 */
import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { COMMON_FLAGS, UsageError, commonOptions, intFlag, parseFlags } from '../common/args.js';
import type { CommonOptions, FlagSpecs } from '../common/args.js';
import { CREDENTIAL_FLAGS, credentialSetup } from '../common/credential-config.js';
import type { CredentialSetup } from '../common/credential-config.js';
import type { Root } from './paths.js';

export const FS_FLAGS = {
  root: { type: 'string', multiple: true, value: 'DIR | NAME=DIR', help: 'a read-only root: one DIR exposed as "/", or several NAME=DIR exposed as "/NAME"' },
  'max-read-bytes': { type: 'string', value: 'N', help: 'largest read per call in bytes (default 1048576, max 16777216)' },
  'search-max-files': { type: 'string', value: 'N', help: 'files a search may visit (default 5000)' },
  'search-max-file-bytes': { type: 'string', value: 'N', help: 'bytes of each file a search scans (default 1048576)' },
  'search-max-ms': { type: 'string', value: 'N', help: 'time budget of one search in ms (default 5000)' },
  'list-max-entries': { type: 'string', value: 'N', help: 'entries one list returns (default 1000)' },
  ...COMMON_FLAGS,
  ...CREDENTIAL_FLAGS,
} satisfies FlagSpecs;

/** The validated fs configuration. */
export interface FsConfig extends CommonOptions {
  roots: Root[];
  maxReadBytes: number;
  searchMaxFiles: number;
  searchMaxFileBytes: number;
  searchMaxMs: number;
  listMaxEntries: number;
  /** How every call's gateway credential is checked (or the development opt-out). */
  credential: CredentialSetup;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Parses and validates the fs flags; throws UsageError with a clear message. */
export function parseFsConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): FsConfig {
  const flags = parseFlags(argv, FS_FLAGS);
  const help = flags.help === true;
  const rawRoots = flags.root ?? [];
  const roots: Root[] = [];
  if (!help) {
    if (rawRoots.length === 0) throw new UsageError('at least one --root is required');
    let named = 0;
    for (const r of rawRoots) {
      const eq = r.indexOf('=');
      const isNamed = eq > 0 && NAME_RE.test(r.slice(0, eq));
      const name = isNamed ? r.slice(0, eq) : '';
      const dir = isNamed ? r.slice(eq + 1) : r;
      if (isNamed) named++;
      if (dir === '') throw new UsageError(`--root ${name}= needs a directory`);
      let real: string;
      try {
        real = realpathSync(resolve(dir));
        if (!statSync(real).isDirectory()) throw new UsageError(`--root ${name ? `${name}=` : ''}${dir}: not a directory`);
      } catch (e) {
        if (e instanceof UsageError) throw e;
        throw new UsageError(`--root ${name ? `${name}=` : ''}${dir}: directory not found or not readable`);
      }
      if (roots.some((x) => x.name === name))
        throw new UsageError(name ? `--root name "${name}" given twice` : 'only one unnamed --root DIR is allowed; name them (NAME=DIR) to serve several');
      roots.push({ name, dir: real });
    }
    if (named > 0 && named !== roots.length) throw new UsageError('do not mix --root DIR with --root NAME=DIR');
  }
  const cfg: Omit<FsConfig, 'credential'> = {
    roots,
    maxReadBytes: intFlag(flags, 'max-read-bytes', 1024 * 1024, 1, 16 * 1024 * 1024),
    searchMaxFiles: intFlag(flags, 'search-max-files', 5000, 1, 1_000_000),
    searchMaxFileBytes: intFlag(flags, 'search-max-file-bytes', 1024 * 1024, 1, 64 * 1024 * 1024),
    searchMaxMs: intFlag(flags, 'search-max-ms', 5000, 10, 120_000),
    listMaxEntries: intFlag(flags, 'list-max-entries', 1000, 1, 100_000),
    ...commonOptions(flags),
  };
  // Last, so that every other usage error is reported first; --help needs no credential setup.
  return { ...cfg, credential: help ? { mode: 'insecure' } : credentialSetup(flags, env) };
}
