/** Identity: bearer-token authentication, challenges and metadata, per-service credentials, state binding. */
export { createAuthenticator, requireScopes } from './authenticator.js';
export type { Authenticator, AuthenticatorContext, Challenge, ProtectedResourceMetadata } from './authenticator.js';
export { ASYMMETRIC_ALGORITHMS, AUTH_DEFAULTS, DEFAULT_DEV_KEY_DIR, DEFAULT_SERVICE_ISSUER, DEV_ISSUER } from './config.js';
export type { AsymmetricAlgorithm, AuthConfig, ClaimsMapping, MtlsConfig, ServiceCredentialsConfig, StateBindingConfig } from './config.js';
export { DEFAULT_DEV_AUDIENCE, ensureDevKey, mintDevToken, parseDuration, tokenCommand } from './dev.js';
export type { DevKey, DevTokenOptions } from './dev.js';
export { createMtlsFetch } from './mtls.js';
export type { FetchLike } from './mtls.js';
export {
  CREDENTIAL_ENV,
  CREDENTIAL_META_KEY,
  SERVICE_CREDENTIAL_TYP,
  createServiceCredentialMinter,
  serviceAudience,
} from './service-credentials.js';
export type { MintRequest, Minter, ServiceCredentialMinterOptions } from './service-credentials.js';
export { createStateBinder, principalKey } from './state.js';
export type { StateBinder, StateSignOptions } from './state.js';
