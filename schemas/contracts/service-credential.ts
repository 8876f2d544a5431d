/**
 * The contract between the gateway and its services for per-call credentials: where a credential
 * travels, how it is typed, which claims it carries, and the environment a stdio service reads to
 * verify it. The gateway (src/auth) mints against it and every service (services/common) verifies
 * against it; this file is the one place both read, so they cannot drift.
 *
 * Leaf module: no imports, nothing but constants and types. `src/` and `services/` never import each
 * other; both import `schemas/`.
 */

/** Key in a forwarded request's `params._meta` that carries the credential (stdio services). */
export const CREDENTIAL_META_KEY = 'dev.micro-mcp/credential';

/** Key in an agent request's `params._meta` that declares the purpose of a call. */
export const PURPOSE_META_KEY = 'micro-mcp/purpose';

/**
 * Result `_meta` key under which a service labels its result's data categories (["pii"], ["secret"],
 * ["internal"]): lower-case words. The gateway records them and makes them facts of the session's later calls.
 */
export const LABELS_META_KEY = 'micro-mcp/labels';

/** JOSE `typ` of service credentials, so they are never mistaken for (or replayed as) another JWT. */
export const SERVICE_CREDENTIAL_TYP = 'micro-mcp-service+jwt';

/**
 * Signing algorithms of service credentials. The gateway signs with one (`auth.service_credentials.alg`,
 * EdDSA unless configured); services accept both, as each key in the gateway's JWKS names its own
 * algorithm and curve. Both are asymmetric: a service holds only public keys.
 */
export const SERVICE_CREDENTIAL_ALGS = ['EdDSA', 'ES256'] as const;
export type ServiceCredentialAlg = (typeof SERVICE_CREDENTIAL_ALGS)[number];

/**
 * The default: Ed25519. Measured in the gateway at 16 agents, it cost ~48 µs less CPU per call than
 * ES256 (P-256) in the 2026-07-28 era and the same in the 2025 era, though in a tight loop it is the
 * slower of the two (see src/auth/service-credentials.ts).
 */
export const SERVICE_CREDENTIAL_ALG: ServiceCredentialAlg = 'EdDSA';

/** Longest lifetime a service accepts, in seconds; the gateway mints at most this. */
export const MAX_CREDENTIAL_LIFETIME_S = 60;

/** Default `iss` of service credentials: the gateway's id. */
export const DEFAULT_SERVICE_ISSUER = 'micro-mcp:gateway';

/** Environment variables the gateway sets when it spawns a stdio service. */
export const CREDENTIAL_ENV = {
  audience: 'MICRO_MCP_CREDENTIAL_AUDIENCE',
  issuer: 'MICRO_MCP_CREDENTIAL_ISSUER',
  jwksFile: 'MICRO_MCP_CREDENTIAL_JWKS_FILE',
  jwksUrl: 'MICRO_MCP_CREDENTIAL_JWKS_URL',
} as const;

/** The `aud` of credentials for one service: a stable name, the same for stdio and remote services. */
export function serviceAudience(service: string): string {
  return `micro-mcp:service:${service}`;
}

/** The `scope` of a credential for one tool (the tool's name as the service knows it). */
export function toolScope(tool: string): string {
  return `tool:${tool}`;
}

/**
 * What the policy decision narrowed one call's reach to. The service enforces it on the request
 * and on every redirect hop, on top of its own configuration (it can only narrow, never widen).
 */
export interface CredentialReach {
  /** http: the hosts this call may reach (lower case, as WHATWG URL parsing gives them). */
  hosts?: string[];
  /** http: the ports this call may reach. */
  ports?: number[];
  /** fs: the canonical virtual paths this call may touch; each covers itself and everything below it. */
  roots?: string[];
}

/** The claims of a service credential, as minted by the gateway and verified by a service. */
export interface ServiceCredentialClaims {
  iss: string;
  /** The principal the gateway authenticated. */
  sub: string;
  /** `serviceAudience(<service>)`. */
  aud: string;
  iat: number;
  nbf: number;
  exp: number;
  /** One id per credential: one credential per forwarded call. */
  jti: string;
  /** Space-separated grants; `toolScope(<tool>)` for the one tool this call may run. */
  scope: string;
  /** The audit decision that allowed the call. */
  decision_id: string;
  purpose: string | null;
  /** The OAuth client acting for the principal, when known. */
  client_id?: string;
  /** What the decision narrowed this call's reach to (absent: the service's own configuration only). */
  reach?: CredentialReach;
}
