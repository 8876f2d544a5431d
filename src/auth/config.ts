/**
 * The `auth` config section, exactly as it appears in YAML (snake_case), validated by
 * schemas/config-auth.schema.json, plus its defaults. Defaults fail closed: asymmetric algorithms
 * only, `exp` always required, dev keys only on loopback.
 */
import { DEFAULT_SERVICE_ISSUER, SERVICE_CREDENTIAL_ALG } from '../../schemas/contracts/service-credential.js';
import type { ServiceCredentialAlg } from '../../schemas/contracts/service-credential.js';
import type { AuthConfig as LoadedAuthConfig, AuthConfigInput } from '../../schemas/generated/config.js';

/** Asymmetric JWS algorithms. HS* and `none` are not in this list and cannot be configured. */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA'] as const;
export type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

/** Which claim feeds which Principal field. Each entry is a claim name or a dotted path
 *  (`realm_access.roles`); a list means "first one present wins". */
export interface ClaimsMapping {
  subject?: string;
  groups?: string | string[];
  scopes?: string | string[];
  client?: string | string[];
  actor?: string;
  purpose?: string;
  /** The claim listing the purposes the principal may act under (a list or a space/comma-separated string). */
  purposes?: string;
  /** Extra claims copied verbatim into `principal.attributes` (strings, numbers, booleans, string arrays). */
  attributes?: string[];
}

export interface ServiceCredentialsConfig {
  /** Lifetime of each per-call service token, seconds (1..MAX_CREDENTIAL_LIFETIME_S, 60). Default 30. */
  ttl_s?: number;
  /** Signing key rotation period, seconds. Default 3600. */
  rotate_every_s?: number;
  /** `iss` of minted tokens. Default "micro-mcp:gateway". */
  issuer?: string;
  /** Signing algorithm: EdDSA (Ed25519, the default) or ES256 (P-256). */
  alg?: ServiceCredentialAlg;
  /** Where the gateway writes its public JWKS for stdio services (re-written on every rotation). */
  jwks_file?: string;
}

export interface MtlsConfig {
  /** PEM client certificate (chain) the gateway presents to remote services. */
  cert_file: string;
  /** PEM private key for `cert_file`. */
  key_file: string;
  /** PEM CA bundle that remote services' certificates must chain to (replaces the system roots). */
  ca_file: string;
  /** Expected server name when it differs from the URL host. */
  server_name?: string;
}

export interface StateBindingConfig {
  /** File holding >= 32 random bytes (raw or base64url) shared by replicas; default: random per process. */
  key_file?: string;
  /** Default lifetime of signed state, seconds. Default 3600. */
  ttl_s?: number;
}

/** What both modes share. Ranges and enums are enforced by schemas/config-auth.schema.json at load. */
interface AuthConfigCommon {
  /** Accepted `aud` values. Default: the gateway's canonical resource URI (RFC 8707). */
  audience?: string | string[];
  /** Authorization servers advertised in Protected Resource Metadata. Default: [issuer]. */
  authorization_servers?: string[];
  /** Scopes advertised in metadata and in 401 challenges. */
  scopes_supported?: string[];
  /** JWKS fetch timeout, ms. Default 3000. */
  jwks_timeout_ms?: number;
  /** Minimum seconds between unknown-kid refreshes. Default 30. */
  jwks_cooldown_s?: number;
  /** Seconds a fetched JWKS is used before a background refresh. Default 600. */
  jwks_max_age_s?: number;
  algorithms?: AsymmetricAlgorithm[];
  /** Allowed clock skew for exp/nbf/iat, seconds (0..300). Default 30. */
  clock_tolerance_s?: number;
  /** Claims that must be present besides `exp` and the subject claim (always required). */
  required_claims?: string[];
  /** Expected JOSE `typ` header (e.g. "at+jwt", RFC 9068); unset = not checked. */
  token_type?: string;
  claims?: ClaimsMapping;
  /** Largest accepted token, bytes (256..65536). Default 8192. */
  max_token_bytes?: number;
  /** Longest token lifetime accepted (exp - iat), seconds. Default 86400. */
  max_token_lifetime_s?: number;
  /** Accept a token with a `jti` once only. Default false. */
  single_use_jti?: boolean;
  /** Token ids remembered for single_use_jti. Default 100000. */
  replay_cache_max_entries?: number;
  /** Verified-token cache. `max_entries: 0` disables it. */
  token_cache?: { max_entries?: number; max_age_s?: number };
  /** Dev mode only: where the dev signing key lives. Default ".dev/keys". */
  dev_key_dir?: string;
  service_credentials?: ServiceCredentialsConfig;
  mtls?: MtlsConfig;
  state_binding?: StateBindingConfig;
}

/** `dev`: trust the local dev key (loopback only); no other key source. */
/** `auth.dev_authorization`: dev mode's own authorization server (src/auth/dev-authorization.ts). */
export interface DevAuthorizationConfig {
  enabled?: boolean;
  subject?: string;
  groups?: string[];
  scopes?: string[];
  token_ttl_s?: number;
}

export interface DevAuthConfig extends AuthConfigCommon {
  mode: 'dev';
  dev_authorization?: DevAuthorizationConfig;
  /** Expected `iss`. Default "urn:micro-mcp:dev". */
  issuer?: string;
  jwks_url?: never;
  jwks_file?: never;
}

/** `jwt`: trust a real issuer, whose keys come from exactly one of jwks_url and jwks_file. */
export type JwtAuthConfig = AuthConfigCommon & {
  mode: 'jwt';
  /** Expected `iss`. */
  issuer: string;
  /** Dev mode only: the schema refuses it with a real issuer. */
  dev_authorization?: never;
} & ({ jwks_url: string; jwks_file?: never } | { jwks_file: string; jwks_url?: never });

/**
 * The `auth` section. Its shape mirrors what the schema guarantees (jwt mode has an issuer and
 * exactly one key source; dev mode has no key source), so code never re-checks it.
 */
export type AuthConfig = DevAuthConfig | JwtAuthConfig;

/**
 * The loaded `auth` section as the union above. The generated type (schemas/generated/config.ts)
 * cannot express the schema's mode rules (if/then), which ajv has already enforced at load; the
 * assertion below keeps this union inside what the schema allows, so the two cannot drift.
 */
export function authConfigOf(loaded: LoadedAuthConfig): AuthConfig {
  return loaded as AuthConfig;
}
const _withinSchema = (c: AuthConfig): AuthConfigInput => c;
void _withinSchema;

export const DEV_ISSUER = 'urn:micro-mcp:dev';
export const DEFAULT_DEV_KEY_DIR = '.dev/keys';

/** Defaults, written down in one place (and mirrored in the JSON Schema's `default`s). */
export const AUTH_DEFAULTS = {
  algorithms: [...ASYMMETRIC_ALGORITHMS] as AsymmetricAlgorithm[],
  clock_tolerance_s: 30,
  max_token_bytes: 8192,
  max_token_lifetime_s: 86400,
  replay_cache_max_entries: 100_000,
  jwks_timeout_ms: 3000,
  jwks_cooldown_s: 30,
  jwks_max_age_s: 600,
  token_cache: { max_entries: 10_000, max_age_s: 60 },
  claims: {
    subject: 'sub',
    groups: ['groups', 'roles'],
    scopes: ['scope', 'scp'],
    client: ['azp', 'client_id'],
    actor: 'act',
    purpose: 'purpose',
    purposes: 'purposes',
    attributes: [] as string[],
  },
  service_credentials: { ttl_s: 30, rotate_every_s: 3600, issuer: DEFAULT_SERVICE_ISSUER, alg: SERVICE_CREDENTIAL_ALG },
  state_binding: { ttl_s: 3600 },
} as const;
