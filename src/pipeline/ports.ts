/**
 * What the pipeline needs from the domain modules, as narrow interfaces, and the one context every
 * request carries through it. The composition root (src/cli) wires the real implementations
 * (policy/, audit/, auth/) in; nothing in this folder signs, records or decides by itself.
 */
import type { ClientCapabilities, LoggingLevel } from '@modelcontextprotocol/server';
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import type { DecisionInput, OutcomeInput } from '../audit/records.js';
import type { Decision, PolicyInput, Principal } from '../types.js';

/** Who asks, over which era, in which request: built once per request by the MCP face. */
export interface CallContext {
  readonly principal: Principal;
  readonly era: 'legacy' | 'modern';
  /** The 2025-era session the request belongs to; null for 2026-07-28 (stateless) and stdio. */
  readonly sessionId: string | null;
  readonly requestId: string;
  readonly clientIp: string | null;
  /**
   * The agent's log threshold: a service's `notifications/message` during this request's call is
   * relayed at or above it; undefined relays none. 2026-07-28: the request's `logLevel` envelope key
   * (none: no messages, as the spec says); 2025: the session's `logging/setLevel` (none yet: every level).
   */
  readonly logLevel?: LoggingLevel | undefined;
  /**
   * What the agent declared it can do (2026-07-28: this request's envelope; 2025: its initialize).
   * A service learns of, and may ask for, only these (pipeline/capabilities); undefined: nothing.
   */
  readonly capabilities?: ClientCapabilities | undefined;
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
