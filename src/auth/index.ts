/** Identity: bearer-token authentication, challenges and metadata, per-service credentials, state binding. */
export { createAuthenticator } from './authenticator.js';
export type { Authenticator, AuthenticatorContext } from './authenticator.js';
export type { Challenge, ProtectedResourceMetadata } from './challenge.js';
export { ASYMMETRIC_ALGORITHMS, AUTH_DEFAULTS, authConfigOf, DEFAULT_DEV_KEY_DIR, DEV_ISSUER } from './config.js';
export type {
  AsymmetricAlgorithm,
  AuthConfig,
  ClaimsMapping,
  DevAuthConfig,
  JwtAuthConfig,
  MtlsConfig,
  ServiceCredentialsConfig,
  StateBindingConfig,
} from './config.js';
export { DEFAULT_DEV_AUDIENCE, ensureDevKey, mintDevToken, parseDuration, tokenCommand } from './dev.js';
export type { DevKey, DevTokenOptions } from './dev.js';
export { createMtlsFetch } from './mtls.js';
export type { FetchLike } from './mtls.js';
export { createServiceCredentialMinter } from './service-credentials.js';
// The gateway<->service contract lives in schemas/contracts; re-exported for src/cli/serve.ts.
export type { MintRequest, Minter, ServiceCredentialMinterOptions } from './service-credentials.js';
export { createStateBinder, principalKey } from './state.js';
export type { StateBinder, StateSignOptions } from './state.js';
