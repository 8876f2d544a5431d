/**
 * github service configuration from command-line flags (documented in services/README.md "github").
 * One API base URL (https://api.github.com, or a GitHub Enterprise `https://HOST/api/v3`), a token
 * from a secret reference only this service receives, writes (createIssue) off unless enabled.
 * Test-only flags exist but are rejected unless MICRO_MCP_GITHUB_TEST_HOOKS=1.
 */
import { COMMON_FLAGS, UsageError, commonOptions, intFlag, parseFlags } from '../common/args.js';
import type { CommonOptions, FlagSpecs } from '../common/args.js';
import { CREDENTIAL_FLAGS, credentialSetup } from '../common/credential-config.js';
import type { CredentialSetup } from '../common/credential-config.js';
import { parseTestHooks, testHookFlags } from '../common/guarded-net.js';
import type { NetTestHooks } from '../common/guarded-net.js';
import { readSecret, SECRET_FLAGS_HELP } from '../common/secret.js';

/** The env variable that unlocks the test-only flags. */
export const GITHUB_TEST_HOOKS_ENV = 'MICRO_MCP_GITHUB_TEST_HOOKS';

export const GITHUB_FLAGS = {
  'base-url': { type: 'string', value: 'URL', help: 'the REST API root: https://api.github.com or https://HOST/api/v3 (https only)' },
  'base-url-env': { type: 'string', value: 'NAME', help: 'read the base URL from this environment variable instead' },
  'token-env': { type: 'string', value: 'NAME', help: `the API token's secret reference, an environment variable name (${SECRET_FLAGS_HELP})` },
  'token-file': { type: 'string', value: 'FILE', help: "the API token's secret reference, a file (absolute path; under the sandbox, readable)" },
  optional: {
    type: 'boolean',
    help: 'start with no tools (and say how to enable them) when the base URL or token variable is not set, instead of refusing to start',
  },
  'allow-create-issue': { type: 'boolean', help: 'serve createIssue (off by default: read-only)' },
  'max-pages': { type: 'string', value: 'N', help: 'pages one call may follow (default 5, max 10)' },
  'max-result-bytes': { type: 'string', value: 'N', help: 'most bytes of text one answer carries (default 262144)' },
  'max-body-chars': { type: 'string', value: 'N', help: 'longest issue body returned, in characters (default 4000)' },
  'max-response-bytes': { type: 'string', value: 'N', help: 'largest API response read (default 4194304)' },
  'timeout-ms': { type: 'string', value: 'N', help: 'time for one tool call, retries and pages included (default 20000)' },
  'max-retry-wait-ms': { type: 'string', value: 'N', help: 'longest rate-limit wait honoured before retrying (default 5000); longer waits are reported' },
  'max-retries': { type: 'string', value: 'N', help: 'retries after rate-limit answers per request (default 2, max 5)' },
  ...COMMON_FLAGS,
  ...CREDENTIAL_FLAGS,
  ...testHookFlags(GITHUB_TEST_HOOKS_ENV),
} satisfies FlagSpecs;

/** The API the service talks to, with the token it alone holds. */
export interface GithubApi {
  /** The base URL without a trailing "/" (path prefix kept, e.g. "/api/v3"). */
  base: URL;
  token: string;
}

/** The validated github configuration. */
export interface GithubConfig extends CommonOptions {
  /** undefined: not configured (only with --optional): the service serves no tools. */
  api?: GithubApi;
  /** Why the API is not configured (for the hint), when it is not. */
  disabledBecause?: string;
  allowCreateIssue: boolean;
  maxPages: number;
  maxResultBytes: number;
  maxBodyChars: number;
  maxResponseBytes: number;
  timeoutMs: number;
  maxRetryWaitMs: number;
  maxRetries: number;
  credential: CredentialSetup;
  test?: NetTestHooks;
}

/** Parses the base URL: https (http only in test-hook mode), no credentials, query or fragment. */
export function parseBaseUrl(raw: string, test: boolean): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError('the base URL is not a valid URL');
  }
  if (u.protocol !== 'https:' && !(test && u.protocol === 'http:')) throw new UsageError('the base URL must use https');
  if (u.username !== '' || u.password !== '') throw new UsageError('the base URL must not carry credentials (use --token-env or --token-file)');
  if (u.search !== '' || u.hash !== '') throw new UsageError('the base URL must not have a query or fragment');
  if (u.hostname.endsWith('.')) throw new UsageError('the base URL host must not end with a dot');
  u.pathname = u.pathname.replace(/\/+$/, '');
  return u;
}

/** Parses and validates the github flags; throws UsageError with a clear message. */
export function parseGithubConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): GithubConfig {
  const flags = parseFlags(argv, GITHUB_FLAGS);
  const help = flags.help === true;
  const test = parseTestHooks(flags, env, GITHUB_TEST_HOOKS_ENV);
  const cfg: Omit<GithubConfig, 'credential'> = {
    allowCreateIssue: flags['allow-create-issue'] === true,
    maxPages: intFlag(flags, 'max-pages', 5, 1, 10),
    maxResultBytes: intFlag(flags, 'max-result-bytes', 262_144, 1024, 16 * 1024 * 1024),
    maxBodyChars: intFlag(flags, 'max-body-chars', 4000, 0, 1_000_000),
    maxResponseBytes: intFlag(flags, 'max-response-bytes', 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    timeoutMs: intFlag(flags, 'timeout-ms', 20_000, 100, 300_000),
    maxRetryWaitMs: intFlag(flags, 'max-retry-wait-ms', 5000, 0, 60_000),
    maxRetries: intFlag(flags, 'max-retries', 2, 0, 5),
    ...commonOptions(flags),
  };
  if (test) cfg.test = test;
  if (!help) {
    if (flags['base-url'] !== undefined && flags['base-url-env'] !== undefined) throw new UsageError('give either --base-url or --base-url-env, not both');
    const optional = flags.optional === true;
    const urlEnv = flags['base-url-env'];
    const rawUrl = flags['base-url'] ?? (urlEnv !== undefined ? env[urlEnv] || undefined : undefined);
    const tokenRef = { env: flags['token-env'], file: flags['token-file'] };
    if (tokenRef.env === undefined && tokenRef.file === undefined) throw new UsageError('the token is required: --token-env NAME or --token-file FILE');
    if (flags['base-url'] === undefined && urlEnv === undefined) throw new UsageError('the base URL is required: --base-url URL or --base-url-env NAME');
    const unset = [...(rawUrl === undefined ? [urlEnv!] : []), ...(tokenRef.env !== undefined && (env[tokenRef.env] ?? '') === '' ? [tokenRef.env] : [])];
    if (optional && unset.length > 0) {
      cfg.disabledBecause = `${unset.join(' and ')} ${unset.length > 1 ? 'are' : 'is'} not set`;
      // A token given without its base URL is not used: it does not stay in this process's environment.
      if (tokenRef.env !== undefined) delete env[tokenRef.env];
    } else {
      if (rawUrl === undefined) throw new UsageError(`--base-url-env ${urlEnv}: the variable is not set for this service`);
      const base = parseBaseUrl(rawUrl, test !== undefined);
      const token = readSecret('token', tokenRef, env)!;
      cfg.api = { base, token };
    }
  }
  // Last, so that every other usage error is reported first; --help needs no credential setup.
  return { ...cfg, credential: help ? { mode: 'insecure' } : credentialSetup(flags, env) };
}
