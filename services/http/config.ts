/**
 * http service configuration from command-line flags (documented in services/README.md), including
 * the domain allowlist. Test-only flags exist but are rejected unless MICRO_MCP_HTTP_TEST_HOOKS=1.
 */
import { isIP } from 'node:net';
import { COMMON_FLAGS, UsageError, commonOptions, intFlag, parseFlags } from '../common/args.js';
import type { CommonOptions, FlagSpecs } from '../common/args.js';
import { CREDENTIAL_FLAGS, credentialSetup } from '../common/credential-config.js';
import type { CredentialSetup } from '../common/credential-config.js';
import { parseTestHooks, testHookFlags } from '../common/guarded-net.js';
import type { NetTestHooks } from '../common/guarded-net.js';

/** The env variable that unlocks the test-only flags. */
export const HTTP_TEST_HOOKS_ENV = 'MICRO_MCP_HTTP_TEST_HOOKS';

export const HTTP_FLAGS = {
  'allow-host': {
    type: 'string',
    multiple: true,
    value: 'HOST',
    help: 'allowed host: exact ("api.example.com") or wildcard ("*.example.com", subdomains only); a bare "*" is refused',
  },
  'allow-port': { type: 'string', multiple: true, value: 'N', help: 'allowed port (default 443, plus 80 with --allow-http)' },
  'allow-http': { type: 'boolean', help: 'also allow plain http:// URLs (https only by default)' },
  'max-bytes': { type: 'string', value: 'N', help: 'largest body returned, in bytes (default 1048576, max 16777216)' },
  'timeout-ms': { type: 'string', value: 'N', help: 'total time for one fetch including redirects (default 10000)' },
  'max-redirects': { type: 'string', value: 'N', help: 'redirects followed, each checked again (default 5, max 5)' },
  ...COMMON_FLAGS,
  ...CREDENTIAL_FLAGS,
  ...testHookFlags(HTTP_TEST_HOOKS_ENV),
} satisfies FlagSpecs;

/** One allowlist entry. */
export type HostPattern = { kind: 'exact'; host: string } | { kind: 'suffix'; suffix: string };

/** The validated http configuration. */
export interface HttpConfig extends CommonOptions {
  allow: HostPattern[];
  ports: Set<number>;
  allowHttp: boolean;
  maxBytes: number;
  timeoutMs: number;
  maxRedirects: number;
  /** How every call's gateway credential is checked (or the development opt-out). */
  credential: CredentialSetup;
  /** Present only in test-hook mode: every socket connect is refused unless it targets loopback. */
  test?: NetTestHooks;
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Parses one allowlist entry; refuses "*", partial wildcards and wildcards over a single label. */
export function parseHostPattern(raw: string): HostPattern {
  const s = raw.toLowerCase();
  if (s === '*' || s === '*.') throw new UsageError('--allow-host "*" would allow every host: list hosts or "*.domain" wildcards');
  const wildcard = s.startsWith('*.');
  const host = wildcard ? s.slice(2) : s;
  if (host.includes('*')) throw new UsageError(`--allow-host ${raw}: "*" is only allowed as a leading "*." label`);
  if (isIP(host) === 6 || host.startsWith('[')) throw new UsageError(`--allow-host ${raw}: IPv6 literals are not supported in the allowlist`);
  if (isIP(host) === 4) {
    if (wildcard) throw new UsageError(`--allow-host ${raw}: wildcards need a domain`);
    return { kind: 'exact', host };
  }
  const labels = host.split('.');
  if (host.length > 253 || labels.some((l) => !LABEL.test(l))) throw new UsageError(`--allow-host ${raw}: not a valid host name (use punycode for IDNs)`);
  if (wildcard && labels.length < 2) throw new UsageError(`--allow-host ${raw}: a wildcard over a top-level domain is too broad`);
  return wildcard ? { kind: 'suffix', suffix: `.${host}` } : { kind: 'exact', host };
}

/** True when `hostname` (already canonicalised by the URL parser, lower case) is allowed. */
export function hostAllowed(allow: readonly HostPattern[], hostname: string): boolean {
  return allow.some((p) => (p.kind === 'exact' ? hostname === p.host : hostname.endsWith(p.suffix) && hostname.length > p.suffix.length));
}

/** Parses and validates the http flags; throws UsageError with a clear message. */
export function parseHttpConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): HttpConfig {
  const flags = parseFlags(argv, HTTP_FLAGS);
  const help = flags.help === true;
  const allow = (flags['allow-host'] ?? []).map(parseHostPattern);
  if (!help && allow.length === 0) throw new UsageError('at least one --allow-host is required');
  const allowHttp = flags['allow-http'] === true;
  const ports = new Set<number>();
  for (const p of flags['allow-port'] ?? []) {
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new UsageError(`--allow-port ${p}: must be 1..65535`);
    ports.add(Number(p));
  }
  if (ports.size === 0) {
    ports.add(443);
    if (allowHttp) ports.add(80);
  }
  const cfg: Omit<HttpConfig, 'credential'> = {
    allow,
    ports,
    allowHttp,
    maxBytes: intFlag(flags, 'max-bytes', 1024 * 1024, 1, 16 * 1024 * 1024),
    timeoutMs: intFlag(flags, 'timeout-ms', 10_000, 100, 120_000),
    maxRedirects: intFlag(flags, 'max-redirects', 5, 0, 5),
    ...commonOptions(flags),
  };
  const test = parseTestHooks(flags, env, HTTP_TEST_HOOKS_ENV);
  if (test) cfg.test = test;
  // Last, so that every other usage error is reported first; --help needs no credential setup.
  return { ...cfg, credential: help ? { mode: 'insecure' } : credentialSetup(flags, env) };
}
