/**
 * What the pipeline needs from the domain modules, as narrow interfaces, and the one context every
 * request carries through it. The composition root (src/cli) wires the real implementations
 * (policy/, audit/, auth/) in; nothing in this folder signs, records or decides by itself.
 */
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import type { DecisionInput, OutcomeInput } from '../audit/records.js';
import type { Decision, PolicyInput, Principal, RedactCategory } from '../types.js';

/** Who asks, over which era, in which request: built once per request by the MCP face. */
export interface CallContext {
  readonly principal: Principal;
  readonly era: 'legacy' | 'modern';
  /** The 2025-era session the request belongs to; null for 2026-07-28 (stateless) and stdio. */
  readonly sessionId: string | null;
  readonly requestId: string;
  readonly clientIp: string | null;
  /**
   * The agent's own bearer token, held only to find it (in any encoding) in what the gateway
   * records or returns; never recorded, logged or forwarded. Absent on stdio.
   */
  readonly credential?: string;
  /** The agent declared the elicitation capability (it can ask its user); absent: it cannot. */
  readonly canElicit?: boolean;
}

/** Applies a decision's `redact` obligation to a result before the agent sees it. */
export interface ResultFilterPort {
  /** A censored copy of `value` and the counts removed per category (never the values). */
  filter(
    value: unknown,
    categories: readonly RedactCategory[],
    credential: string | undefined,
  ): { value: unknown; counts: Partial<Record<RedactCategory, number>> };
}

export interface PolicyPort {
  /** Decides with the engines configured for the input's service (deny overrides; errors deny). */
  decide(input: PolicyInput): Decision;
  readonly revision: string;
}

export interface AuditPort {
  /** Resolves once the record is durable (per config); rejects when it cannot be written (the call is refused). */
  decision(rec: DecisionInput & { decision_id: string }): Promise<unknown>;
  outcome(rec: OutcomeInput): Promise<unknown>;
}

export interface CredentialPort {
  /** A short-lived token for this service and this call only (never the agent's token), carrying the decision's reach. */
  mint(req: {
    service: string;
    principal: Principal;
    tool: string;
    purpose: string | null;
    decisionId: string;
    reach?: CredentialReach | undefined;
  }): Promise<string>;
}

export interface StatePort {
  /** Signs a payload the agent will bring back; bound to the principal. */
  sign(principalId: string, payload: Record<string, unknown>): string;
  /** Verifies and returns the payload; throws for another principal, tampering or expiry. */
  verify(principalId: string, token: string): unknown;
}

/** Records a request refused before any decision (probing is on the record; floods are aggregated). */
export interface ProbePort {
  refused(cc: CallContext, what: { method: string; code: string; message: string; tool?: string }): Promise<void>;
}
