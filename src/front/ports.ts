/**
 * What the front needs from the domain modules, as narrow interfaces. The CLI wires the real
 * implementations (policy/, audit/, auth/) in; nothing here decides, records or signs by itself.
 */
import type { Decision, PolicyInput, Principal } from '../types.js';

export interface PolicyPort {
  /** Decides with the engines configured for the input's service (deny overrides; errors deny). */
  decide(input: PolicyInput): Decision | Promise<Decision>;
  readonly revision: string;
}

export interface DecisionAudit {
  /** The PolicyInput the engines saw (the audit log keeps a digest of its arguments, not the arguments). */
  input: PolicyInput;
  decision: Decision;
  decision_id: string;
  token_id?: string;
}

export type Outcome = 'ok' | 'tool_error' | 'service_error' | 'timeout' | 'cancelled' | 'refused' | 'input_required';

export interface OutcomeAudit {
  decision_id: string;
  outcome: Outcome;
  error?: { code: string; message: string };
  service_us?: number;
  total_us?: number;
  response_bytes?: number;
  result?: unknown;
}

export interface AuditPort {
  /** Resolves once the record is durable (per config); rejects when it cannot be written (the call is refused). */
  decision(rec: DecisionAudit): Promise<unknown>;
  outcome(rec: OutcomeAudit): Promise<unknown>;
}

export interface CredentialPort {
  /** A short-lived token for this service and this call only (never the agent's token). */
  mint(req: { service: string; principal: Principal; tool: string; purpose: string | null; decisionId: string }): Promise<string>;
}

export interface StatePort {
  /** Signs a payload the agent will bring back; bound to the principal. */
  sign(principalId: string, payload: Record<string, unknown>): string;
  /** Verifies and returns the payload; throws for another principal, tampering or expiry. */
  verify(principalId: string, token: string): Record<string, unknown>;
}

/** Where the per-call credential travels in a forwarded request's `_meta`. */
export const CREDENTIAL_META_KEY = 'dev.micro-mcp/credential';
/** Where an agent declares the purpose of a call. */
export const PURPOSE_META_KEY = 'micro-mcp/purpose';
