/**
 * vector service configuration from command-line flags (documented in services/README.md "vector").
 * One collection per instance, read-only unless `--allow-writes`; the local embedder by default.
 * Test-only flags exist but are rejected unless MICRO_MCP_VECTOR_TEST_HOOKS=1.
 */
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { COMMON_FLAGS, UsageError, commonOptions, intFlag, parseFlags } from '../common/args.js';
import type { CommonOptions, FlagSpecs } from '../common/args.js';
import { CREDENTIAL_FLAGS, credentialSetup } from '../common/credential-config.js';
import type { CredentialSetup } from '../common/credential-config.js';
import { parseTestHooks, testHookFlags } from '../common/guarded-net.js';
import type { NetTestHooks } from '../common/guarded-net.js';
import { readSecret, SECRET_FLAGS_HELP } from '../common/secret.js';

/** The env variable that unlocks the test-only flags. */
export const VECTOR_TEST_HOOKS_ENV = 'MICRO_MCP_VECTOR_TEST_HOOKS';

export const VECTOR_FLAGS = {
  collection: { type: 'string', value: 'NAME', help: 'the one collection this instance serves (also the only value tools accept as "collection")' },
  store: { type: 'string', value: 'DIR', help: 'the folder holding the collection (collection.json), as `micro-mcp vector index` writes it' },
  index: { type: 'string', value: 'DIR', help: 'build the collection from the text files under DIR into --store, then exit (no serving)' },
  'allow-writes': { type: 'boolean', help: 'serve vector.upsert (the store folder must be writable; off by default: read-only)' },
  'max-k': { type: 'string', value: 'N', help: 'most results one search returns (default 20, max 100)' },
  'max-query-chars': { type: 'string', value: 'N', help: 'longest query in characters (default 1000, max 20000)' },
  'max-result-bytes': { type: 'string', value: 'N', help: 'most text bytes one answer carries, all results together (default 65536)' },
  'max-snippet-chars': { type: 'string', value: 'N', help: 'longest text of one search result in characters (default 1000)' },
  'max-doc-chars': { type: 'string', value: 'N', help: 'longest document text indexed or upserted, in characters (default 20000)' },
  'max-documents': { type: 'string', value: 'N', help: 'most documents in the collection (default 100000)' },
  'min-score': { type: 'string', value: 'X', help: 'lowest cosine similarity a result may have, 0..1 (default 0.01)' },
  'max-files': { type: 'string', value: 'N', help: '--index: most files read (default 10000)' },
  'max-file-bytes': { type: 'string', value: 'N', help: '--index: bytes read of each file (default 1048576)' },
  embedder: {
    type: 'string',
    value: 'local|openai',
    help: 'local: hashed word and character n-grams, no network (default); openai: an OpenAI-compatible embeddings endpoint',
  },
  'embed-url': { type: 'string', value: 'URL', help: 'openai: the embeddings endpoint, e.g. https://api.openai.com/v1/embeddings (https only)' },
  'embed-model': { type: 'string', value: 'MODEL', help: 'openai: the model name sent with each request' },
  'embed-key-env': { type: 'string', value: 'NAME', help: `openai: the API key's secret reference, an environment variable name (${SECRET_FLAGS_HELP})` },
  'embed-key-file': { type: 'string', value: 'FILE', help: "openai: the API key's secret reference, a file (absolute path; under the sandbox, readable)" },
  'embed-timeout-ms': { type: 'string', value: 'N', help: 'openai: time for one embeddings request (default 15000)' },
  ...COMMON_FLAGS,
  ...CREDENTIAL_FLAGS,
  ...testHookFlags(VECTOR_TEST_HOOKS_ENV),
} satisfies FlagSpecs;

/** Where embeddings come from. */
export type EmbedderConfig = { kind: 'local' } | { kind: 'openai'; url: URL; model: string; key: string; timeoutMs: number; test?: NetTestHooks };

/** The validated vector configuration. */
export interface VectorConfig extends CommonOptions {
  collection: string;
  /** Real path of the store folder (may not exist yet in index mode). */
  store: string;
  /** Index mode: the folder to build the collection from. */
  indexDir?: string;
  allowWrites: boolean;
  maxK: number;
  maxQueryChars: number;
  maxResultBytes: number;
  maxSnippetChars: number;
  maxDocChars: number;
  maxDocuments: number;
  minScore: number;
  maxFiles: number;
  maxFileBytes: number;
  embedder: EmbedderConfig;
  credential: CredentialSetup;
}

/** Collection names: what policies compare, so kept plain. */
export const COLLECTION_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

function realDir(flag: string, dir: string): string {
  let real: string;
  try {
    real = realpathSync(resolve(dir));
  } catch {
    throw new UsageError(`--${flag} ${dir}: folder not found or not readable`);
  }
  if (!statSync(real).isDirectory()) throw new UsageError(`--${flag} ${dir}: not a folder`);
  return real;
}

/** Parses and validates the vector flags; throws UsageError with a clear message. */
export function parseVectorConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): VectorConfig {
  const flags = parseFlags(argv, VECTOR_FLAGS);
  const help = flags.help === true;
  const collection = flags.collection ?? '';
  const indexing = flags.index !== undefined;
  if (!help) {
    if (!COLLECTION_RE.test(collection)) throw new UsageError('--collection NAME is required ([a-z0-9][a-z0-9._-]*, at most 64 characters)');
    if (flags.store === undefined) throw new UsageError('--store DIR is required');
  }
  let store = flags.store === undefined ? '' : resolve(flags.store);
  // Index mode creates the store; serving needs it to exist (under the sandbox: in sandbox.read).
  if (!help && !indexing) store = realDir('store', store);
  const indexDir = indexing ? realDir('index', flags.index!) : undefined;
  const minScoreRaw = flags['min-score'] ?? '0.01';
  const minScore = Number(minScoreRaw);
  if (!/^(0(\.\d+)?|1(\.0+)?)$/.test(minScoreRaw) || !(minScore >= 0 && minScore <= 1)) throw new UsageError('--min-score must be a number from 0 to 1');
  const test = parseTestHooks(flags, env, VECTOR_TEST_HOOKS_ENV);
  const embedder = help ? ({ kind: 'local' } as const) : embedderConfig(flags, env, test);
  const allowWrites = flags['allow-writes'] === true;
  if (allowWrites && !help && !indexing) {
    try {
      accessSync(store, constants.W_OK);
    } catch {
      throw new UsageError(
        '--allow-writes needs a writable --store folder (under the sandbox the gateway binds data read-only: serve read-only, or give the service a writable store)',
      );
    }
  }
  const cfg: Omit<VectorConfig, 'credential'> = {
    collection,
    store,
    allowWrites,
    maxK: intFlag(flags, 'max-k', 20, 1, 100),
    maxQueryChars: intFlag(flags, 'max-query-chars', 1000, 1, 20_000),
    maxResultBytes: intFlag(flags, 'max-result-bytes', 65_536, 1024, 16 * 1024 * 1024),
    maxSnippetChars: intFlag(flags, 'max-snippet-chars', 1000, 16, 100_000),
    maxDocChars: intFlag(flags, 'max-doc-chars', 20_000, 16, 1_000_000),
    maxDocuments: intFlag(flags, 'max-documents', 100_000, 1, 1_000_000),
    minScore,
    maxFiles: intFlag(flags, 'max-files', 10_000, 1, 1_000_000),
    maxFileBytes: intFlag(flags, 'max-file-bytes', 1024 * 1024, 1, 64 * 1024 * 1024),
    embedder,
    ...commonOptions(flags),
  };
  if (indexDir !== undefined) cfg.indexDir = indexDir;
  // Index mode serves nothing, so it checks no credential; --help needs none either.
  return { ...cfg, credential: help || indexing ? { mode: 'insecure' } : credentialSetup(flags, env) };
}

function embedderConfig(flags: ReturnType<typeof parseFlags<typeof VECTOR_FLAGS>>, env: NodeJS.ProcessEnv, test: NetTestHooks | undefined): EmbedderConfig {
  const kind = flags.embedder ?? 'local';
  const remoteFlags = (['embed-url', 'embed-model', 'embed-key-env', 'embed-key-file', 'embed-timeout-ms'] as const).filter((f) => flags[f] !== undefined);
  if (kind === 'local') {
    if (remoteFlags.length > 0) throw new UsageError(`--${remoteFlags[0]} needs --embedder openai`);
    return { kind: 'local' };
  }
  if (kind !== 'openai') throw new UsageError('--embedder must be local or openai');
  if (flags['embed-url'] === undefined) throw new UsageError('--embedder openai needs --embed-url URL');
  if (flags['embed-model'] === undefined) throw new UsageError('--embedder openai needs --embed-model MODEL');
  let url: URL;
  try {
    url = new URL(flags['embed-url']);
  } catch {
    throw new UsageError('--embed-url is not a valid URL');
  }
  // http only in test-hook mode (a loopback fake endpoint); the key never travels in clear otherwise.
  if (url.protocol !== 'https:' && !(test !== undefined && url.protocol === 'http:')) throw new UsageError('--embed-url must use https');
  if (url.username !== '' || url.password !== '') throw new UsageError('--embed-url must not carry credentials (use --embed-key-env or --embed-key-file)');
  const key = readSecret('embed-key', { env: flags['embed-key-env'], file: flags['embed-key-file'] }, env);
  if (key === undefined) throw new UsageError('--embedder openai needs the API key: --embed-key-env NAME or --embed-key-file FILE');
  const cfg: EmbedderConfig = { kind: 'openai', url, model: flags['embed-model'], key, timeoutMs: intFlag(flags, 'embed-timeout-ms', 15_000, 100, 120_000) };
  if (test) cfg.test = test;
  return cfg;
}
