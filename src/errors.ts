/**
 * One error type for the whole gateway, with a stable `code` callers can switch on (after jose's
 * `ERR_JWT_EXPIRED` style). Mapping to HTTP statuses and JSON-RPC errors happens in ONE place
 * (`toHttpStatus` / `toJsonRpcError` below), never at the throw site.
 *
 * Messages are written for the agent or operator and must never contain tokens, claims, keys or
 * tool arguments: pass such detail only through `data` fields that are safe to show.
 */
import { ProtocolError } from '@modelcontextprotocol/server';

export type GatewayErrorCode =
  // edge
  | 'ERR_BAD_REQUEST'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_FORBIDDEN_ORIGIN'
  | 'ERR_HEADER_MISMATCH'
  | 'ERR_SESSION_NOT_FOUND'
  // authentication
  | 'ERR_AUTH_MISSING'
  | 'ERR_AUTH_INVALID'
  | 'ERR_AUTH_EXPIRED'
  | 'ERR_AUTH_NOT_YET_VALID'
  | 'ERR_AUTH_ISSUER'
  | 'ERR_AUTH_AUDIENCE'
  | 'ERR_AUTH_ALGORITHM'
  | 'ERR_AUTH_SIGNATURE'
  | 'ERR_AUTH_KEY_UNKNOWN'
  | 'ERR_AUTH_CLAIM_MISSING'
  | 'ERR_AUTH_TOO_LARGE'
  | 'ERR_AUTH_LIFETIME'
  | 'ERR_AUTH_REPLAYED'
  | 'ERR_AUTH_REPLAY_CACHE_FULL'
  | 'ERR_AUTH_JWKS_UNAVAILABLE'
  | 'ERR_INSUFFICIENT_SCOPE'
  // catalog / routing
  | 'ERR_TOOL_NOT_FOUND'
  | 'ERR_PROMPT_NOT_FOUND'
  | 'ERR_RESOURCE_NOT_FOUND'
  | 'ERR_SERVICE_UNAVAILABLE'
  | 'ERR_SERVICE_TIMEOUT'
  | 'ERR_SERVICE_ERROR'
  | 'ERR_SERVICE_FLOOD'
  | 'ERR_SERVICE_BUSY'
  | 'ERR_SERVICE_CIRCUIT_OPEN'
  | 'ERR_RESULT_TOO_LARGE'
  | 'ERR_CONSENT_REQUIRED'
  | 'ERR_CONSENT_DECLINED'
  | 'ERR_CONSENT_CANCELLED'
  | 'ERR_CONSENT_EXPIRED'
  | 'ERR_CONSENT_MISMATCH'
  | 'ERR_TOOL_DEFINITION_CHANGED'
  | 'ERR_INPUT_STATE_INVALID'
  | 'ERR_INPUT_REQUEST_REFUSED'
  | 'ERR_INPUT_ANSWER_INVALID'
  // policy
  | 'ERR_POLICY_DENIED'
  | 'ERR_POLICY_ENGINE'
  | 'ERR_POLICY_COMPILE'
  // limits
  | 'ERR_RATE_LIMITED'
  // audit
  | 'ERR_AUDIT_UNAVAILABLE'
  // shared state (several replicas)
  | 'ERR_STATE_UNAVAILABLE'
  // configuration
  | 'ERR_CONFIG_INVALID'
  | 'ERR_INTERNAL';

export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  /** Safe-to-show structured detail (policy ids, reasons, a config key path). Never secrets. */
  readonly data?: Record<string, unknown>;

  constructor(code: GatewayErrorCode, message: string, data?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options);
    this.name = 'GatewayError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}

export const isGatewayError = (e: unknown): e is GatewayError => e instanceof GatewayError;

/** The HTTP status a GatewayError maps to when it ends an HTTP exchange (before JSON-RPC dispatch). */
export function toHttpStatus(code: GatewayErrorCode): number {
  switch (code) {
    case 'ERR_BAD_REQUEST':
    case 'ERR_HEADER_MISMATCH':
      return 400;
    case 'ERR_AUTH_MISSING':
    case 'ERR_AUTH_INVALID':
    case 'ERR_AUTH_EXPIRED':
    case 'ERR_AUTH_NOT_YET_VALID':
    case 'ERR_AUTH_ISSUER':
    case 'ERR_AUTH_AUDIENCE':
    case 'ERR_AUTH_ALGORITHM':
    case 'ERR_AUTH_SIGNATURE':
    case 'ERR_AUTH_KEY_UNKNOWN':
    case 'ERR_AUTH_CLAIM_MISSING':
    case 'ERR_AUTH_TOO_LARGE':
    case 'ERR_AUTH_LIFETIME':
    case 'ERR_AUTH_REPLAYED':
      return 401;
    case 'ERR_FORBIDDEN_ORIGIN':
    case 'ERR_INSUFFICIENT_SCOPE':
      return 403;
    case 'ERR_SESSION_NOT_FOUND':
      return 404;
    case 'ERR_BODY_TOO_LARGE':
      return 413;
    case 'ERR_RATE_LIMITED':
      return 429;
    case 'ERR_AUTH_JWKS_UNAVAILABLE':
    case 'ERR_AUTH_REPLAY_CACHE_FULL':
    case 'ERR_STATE_UNAVAILABLE':
    case 'ERR_SERVICE_UNAVAILABLE':
    case 'ERR_SERVICE_BUSY':
    case 'ERR_SERVICE_CIRCUIT_OPEN':
    case 'ERR_AUDIT_UNAVAILABLE':
      return 503;
    case 'ERR_SERVICE_TIMEOUT':
      return 504;
    default:
      return 500;
  }
}

/** JSON-RPC error codes. -32000..-32099 is the implementation-defined server range. */
export function toJsonRpcCode(code: GatewayErrorCode): number {
  switch (code) {
    case 'ERR_BAD_REQUEST':
      return -32600;
    case 'ERR_TOOL_NOT_FOUND':
    case 'ERR_PROMPT_NOT_FOUND':
    case 'ERR_INPUT_STATE_INVALID':
    case 'ERR_INPUT_ANSWER_INVALID':
      return -32602;
    case 'ERR_RESOURCE_NOT_FOUND':
      return -32002;
    case 'ERR_POLICY_DENIED':
    case 'ERR_CONSENT_REQUIRED':
    case 'ERR_CONSENT_DECLINED':
    case 'ERR_CONSENT_CANCELLED':
    case 'ERR_CONSENT_EXPIRED':
    case 'ERR_CONSENT_MISMATCH':
    case 'ERR_TOOL_DEFINITION_CHANGED':
      return -32003;
    case 'ERR_RATE_LIMITED':
      return -32029;
    case 'ERR_STATE_UNAVAILABLE':
      return -32004;
    case 'ERR_SERVICE_UNAVAILABLE':
    case 'ERR_SERVICE_TIMEOUT':
    case 'ERR_SERVICE_ERROR':
    case 'ERR_SERVICE_FLOOD':
    case 'ERR_SERVICE_BUSY':
    case 'ERR_SERVICE_CIRCUIT_OPEN':
    case 'ERR_RESULT_TOO_LARGE':
      return -32004;
    case 'ERR_INPUT_REQUEST_REFUSED':
      return -32005;
    case 'ERR_INSUFFICIENT_SCOPE':
      return -32006;
    default:
      return -32603;
  }
}

/** The JSON-RPC `error` object for a GatewayError: code, message and safe data including the stable code. */
export function toJsonRpcError(e: GatewayError): { code: number; message: string; data: Record<string, unknown> } {
  return { code: toJsonRpcCode(e.code), message: e.message, data: { code: e.code, ...e.data } };
}

/** GatewayError -> the SDK's ProtocolError, which the MCP face sends as the JSON-RPC error. */
export function toProtocolError(e: GatewayError): ProtocolError {
  const j = toJsonRpcError(e);
  return new ProtocolError(j.code, j.message, j.data);
}
