/**
 * What the pipeline needs from the domain modules, as narrow interfaces, and the one context every
 * request carries through it. The composition root (src/cli) wires the real implementations
 * (policy/, audit/, auth/) in; nothing in this folder signs, records or decides by itself.
 */
import type { ClientCapabilities, LoggingLevel } from '@modelcontextprotocol/server';
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
  /** What the HTTP edge measured for traces (absent on stdio). */
  readonly edge?: EdgeTiming | undefined;
  /**
   * The agent's own bearer token, held only to find it (in any encoding) in what the gateway
   * records or returns; never recorded, logged or forwarded. Absent on stdio.
   */
  readonly credential?: string;
  /** The agent declared the elicitation capability (it can ask its user); absent: it cannot. */
  readonly canElicit?: boolean;
}

/** The HTTP edge's part of a request, in performance.now() milliseconds, and the agent's trace headers. */
export interface EdgeTiming {
  /** When the request reached the edge. */
  readonly startMs: number;
  /** When authentication began and ended. */
  readonly authStartMs: number;
  readonly authEndMs: number;
  /** The agent's W3C `traceparent` / `tracestate` headers (used only when tracing trusts them). */
  readonly traceparent?: string | undefined;
  readonly tracestate?: string | undefined;
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
  /** `tool`: as the agent named it; `canonical` and `service`: what it resolved to, when it did. */
  refused(cc: CallContext, what: { method: string; code: string; message: string; tool?: string; canonical?: string; service?: string }): Promise<void>;
}

/**
 * Watches calls for metrics and traces (src/obs). It never decides, refuses or changes a call; its
 * methods do not throw.
 */
export interface CallObserver {
  /** A call has been resolved to a service and is about to be decided. */
  begin(cc: CallContext, call: { method: string; service: string; tool: string; decisionId: string; meta: Record<string, unknown> }): CallWatch;
}

/** One call's steps as the pipeline reports them. */
export interface CallWatch {
  /** The trace context the decision record carries (absent without tracing). */
  readonly trace?: { trace_id: string; span_id: string } | undefined;
  /** The decision starts (synchronous); the returned function ends it with the decision. */
  policy(): (decision: Decision) => void;
  /** The decision record is being written; the returned function ends it (with an error code on failure). */
  audit(): (error?: string) => void;
  /** The call is refused by a limit after the allow. */
  limitRefused(cause: string): void;
  /** The call goes to the service now: `_meta` entries that carry the trace context to it (may be empty). */
  forwarding(): Record<string, unknown>;
  /** The call ended: its outcome (an audit outcome, or `denied`/`audit_unavailable`) and the deciding rule ids. */
  ended(outcome: string, rules: string, serviceUs?: number, totalUs?: number): void;
}
