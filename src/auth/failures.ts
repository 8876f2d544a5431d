/**
 * What a refused token looks like: one stable code per cause and the one sentence a client is told
 * about it (the GatewayError message and the challenge's `error_description` alike). Never the
 * token, never its claims: only claim *names* travel in `data`.
 */
import { errors as joseErrors } from 'jose';
import { GatewayError, isGatewayError } from '../errors.js';
import type { GatewayErrorCode } from '../errors.js';

const DESCRIPTIONS: Partial<Record<GatewayErrorCode, string>> = {
  ERR_AUTH_MISSING: 'a bearer token is required in the Authorization header',
  ERR_AUTH_EXPIRED: 'the token has expired',
  ERR_AUTH_NOT_YET_VALID: 'the token is not valid yet',
  ERR_AUTH_ISSUER: 'the token was issued by an untrusted issuer',
  ERR_AUTH_AUDIENCE: 'the token was not issued for this resource',
  ERR_AUTH_ALGORITHM: 'the token signing algorithm is not allowed',
  ERR_AUTH_SIGNATURE: 'the token signature is invalid',
  ERR_AUTH_KEY_UNKNOWN: 'the token was signed by an unknown key',
  ERR_AUTH_CLAIM_MISSING: 'the token lacks a required claim',
  ERR_AUTH_TOO_LARGE: 'the token is too large',
  ERR_AUTH_INVALID: 'the token is malformed',
  ERR_AUTH_LIFETIME: 'the token lives longer than this resource accepts',
  ERR_AUTH_REPLAYED: 'the token was already used',
  ERR_AUTH_REPLAY_CACHE_FULL: 'single-use tokens cannot be accepted right now; try again later',
  ERR_AUTH_JWKS_UNAVAILABLE: 'the token issuer keys are unavailable; try again later',
  ERR_INSUFFICIENT_SCOPE: 'the token lacks the scope this request needs',
};

/** The sentence a client is told for `code`. */
export function describeFailure(code: GatewayErrorCode): string {
  return DESCRIPTIONS[code] ?? 'authentication failed';
}

/** Throws the GatewayError for `code`, with its public description as the message. */
export function fail(code: GatewayErrorCode, data?: Record<string, unknown>, cause?: unknown): never {
  throw new GatewayError(code, describeFailure(code), data, cause ? { cause } : undefined);
}

/** Translates jose's errors into our stable codes (a GatewayError passes through). */
export function failFromJose(err: unknown): never {
  if (isGatewayError(err)) throw err;
  if (err instanceof joseErrors.JWTExpired) fail('ERR_AUTH_EXPIRED', { claim: 'exp' }, err);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') fail('ERR_AUTH_CLAIM_MISSING', { claim: err.claim }, err);
    if (err.claim === 'iss') fail('ERR_AUTH_ISSUER', { claim: 'iss' }, err);
    if (err.claim === 'aud') fail('ERR_AUTH_AUDIENCE', { claim: 'aud' }, err);
    if (err.claim === 'nbf') fail('ERR_AUTH_NOT_YET_VALID', { claim: 'nbf' }, err);
    fail('ERR_AUTH_INVALID', { claim: err.claim }, err);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) fail('ERR_AUTH_ALGORITHM', undefined, err);
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) fail('ERR_AUTH_SIGNATURE', undefined, err);
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    fail('ERR_AUTH_KEY_UNKNOWN', undefined, err);
  }
  fail('ERR_AUTH_INVALID', undefined, err);
}
