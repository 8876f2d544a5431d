/**
 * Where a service's credential check gets its configuration: the env the gateway sets when it
 * spawns a stdio service (`CREDENTIAL_ENV` in schemas/contracts/service-credential.ts), or
 * the equivalent flags (what an operator passes to a remote, HTTP-mode service). Flags win over env,
 * field by field. The check is ON by default: a service without a complete configuration refuses to
 * start (exit 2) unless `--insecure-no-credentials` is given, which is for development only.
 */
import { accessSync, constants } from 'node:fs';
import { isAbsolute } from 'node:path';
import { UsageError } from './args.js';
import type { FlagSpecs, FlagValues } from './args.js';
import { jwksUrlAllowed } from './credential.js';
import type { CredentialVerifierOptions } from './credential.js';
import { CREDENTIAL_ENV, serviceAudience } from '../../schemas/contracts/service-credential.js';

/** The credential flags both services accept (merged into their flag specs). */
export const CREDENTIAL_FLAGS = {
  'credential-audience': {
    type: 'string',
    value: 'AUD',
    help: `audience of the gateway's per-call credentials, "${serviceAudience('<name>')}" (default: $${CREDENTIAL_ENV.audience})`,
  },
  'credential-issuer': { type: 'string', value: 'ISS', help: `issuer of the credentials, the gateway's id (default: $${CREDENTIAL_ENV.issuer})` },
  'credential-jwks-file': { type: 'string', value: 'FILE', help: `the gateway's public keys as a JWKS file (default: $${CREDENTIAL_ENV.jwksFile})` },
  'credential-jwks-url': {
    type: 'string',
    value: 'URL',
    help: `the gateway's /.well-known/jwks.json, https or loopback http (default: $${CREDENTIAL_ENV.jwksUrl})`,
  },
  'insecure-no-credentials': {
    type: 'boolean',
    help: 'DEVELOPMENT ONLY: accept calls without a gateway credential (anyone who reaches the service can use it)',
  },
} satisfies FlagSpecs;

/** Either a verifier configuration or the explicit development opt-out. */
export type CredentialSetup = { mode: 'verify'; options: CredentialVerifierOptions } | { mode: 'insecure' };

/**
 * Resolves the credential configuration from flags and env; throws UsageError (exit 2) when it is
 * incomplete or contradictory. The JWKS file must exist and be readable now: under the sandbox a
 * file outside `--allow-fs-read` would otherwise turn every later call into a refusal.
 */
export function credentialSetup(flags: FlagValues<typeof CREDENTIAL_FLAGS>, env: NodeJS.ProcessEnv = process.env): CredentialSetup {
  const audience = flags['credential-audience'] ?? (env[CREDENTIAL_ENV.audience] || undefined);
  const issuer = flags['credential-issuer'] ?? (env[CREDENTIAL_ENV.issuer] || undefined);
  // A flag for one key source overrides an env value for the other, so an operator can switch.
  const fileFlag = flags['credential-jwks-file'];
  const urlFlag = flags['credential-jwks-url'];
  let jwksFile = fileFlag;
  let jwksUrl = urlFlag;
  if (fileFlag === undefined && urlFlag === undefined) {
    jwksFile = env[CREDENTIAL_ENV.jwksFile] || undefined;
    jwksUrl = env[CREDENTIAL_ENV.jwksUrl] || undefined;
  }
  if (flags['insecure-no-credentials'] === true) {
    if (fileFlag !== undefined || urlFlag !== undefined || flags['credential-audience'] !== undefined || flags['credential-issuer'] !== undefined) {
      throw new UsageError('--insecure-no-credentials contradicts the --credential-* flags: choose one');
    }
    return { mode: 'insecure' };
  }
  const missing: string[] = [];
  if (!audience) missing.push(`--credential-audience (or ${CREDENTIAL_ENV.audience})`);
  if (!issuer) missing.push(`--credential-issuer (or ${CREDENTIAL_ENV.issuer})`);
  if (!jwksFile && !jwksUrl) missing.push(`--credential-jwks-file / --credential-jwks-url (or ${CREDENTIAL_ENV.jwksFile} / ${CREDENTIAL_ENV.jwksUrl})`);
  if (missing.length > 0) {
    throw new UsageError(
      `refusing to start: every call must carry a gateway credential, but the verifier is not configured (missing ${missing.join(', ')}). ` +
        'The gateway sets the env when it spawns the service; pass --insecure-no-credentials for development only',
    );
  }
  if (jwksFile && jwksUrl) throw new UsageError('give either a JWKS file or a JWKS URL for credentials, not both');
  if (jwksFile) {
    if (!isAbsolute(jwksFile)) throw new UsageError('the credential JWKS file must be an absolute path');
    try {
      accessSync(jwksFile, constants.R_OK);
    } catch {
      throw new UsageError('the credential JWKS file is missing or not readable (under the sandbox, add its folder to --allow-fs-read)');
    }
    return { mode: 'verify', options: { audience: audience!, issuer: issuer!, jwksFile } };
  }
  let u: URL;
  try {
    u = new URL(jwksUrl!);
  } catch {
    throw new UsageError('the credential JWKS URL is not a valid URL');
  }
  if (!jwksUrlAllowed(u)) throw new UsageError('the credential JWKS URL must use https (http only on loopback)');
  return { mode: 'verify', options: { audience: audience!, issuer: issuer!, jwksUrl: u.href } };
}
