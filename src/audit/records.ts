/**
 * The audit record: one JSON line per decision, outcome or event, hash-chained. Field names follow
 * OPA's decision-log event where they mean the same thing (`decision_id`, `timestamp`,
 * `requested_by`, `input`, `result`, `bundles.<name>.revision`, `metrics`, `labels`, `masked`);
 * the rest are ours. The record types are generated from schemas/audit-event.schema.json
 * (`make schemas`), their one source; the writer (audit-log.ts) is type-checked against them.
 */
import type { AuditRecord, DecisionRecord, EventRecord, OutcomeRecord } from '../../schemas/generated/audit-event.js';
import type { Decision, PolicyInput, Principal } from '../types.js';

export type { AuditRecord, DecisionRecord, EventRecord, OutcomeRecord };

/** Format version of a record line; the first member of every line (it sorts before all others). */
export const AUDIT_FORMAT_VERSION: AuditRecord['_v'] = 1;

/** `prev_hash` of the very first record of a chain (the genesis marker). */
export const GENESIS_HASH = `sha256:${'0'.repeat(64)}`;

/**
 * How a forwarded call ended. `refused`: the gateway stopped it after an allow (rate limit, consent,
 * obligation). `input_required`: a 2026-era service asked the agent for input; the agent's retry is a
 * new call with its own decision.
 */
export type AuditOutcome = OutcomeRecord['outcome'];

export type AuditEventType = EventRecord['type'];

/** Who the record is about: the principal without its attributes. */
export type AuditPrincipal = NonNullable<AuditRecord['principal']>;

/** The members `append` adds to every record: the chain, the time and the instance. */
type ChainMembers = '_v' | 'seq' | 'prev_hash' | 'hash' | 'timestamp' | 'labels';

/** A record as the writer builds it, before `append` chains it. */
export type RecordFields<R extends AuditRecord = AuditRecord> = R extends AuditRecord ? Omit<R, ChainMembers> : never;

// ---- what the gateway passes in -------------------------------------------------------------

/** Input of `AuditLog.decision()`: the PolicyInput the engines saw and their Decision. */
export interface DecisionInput {
  input: PolicyInput;
  decision: Decision;
  /** Supply to correlate with an id issued elsewhere; otherwise a UUID is generated. */
  decision_id?: string;
  /** The token's `jti`, for correlation (never the token). */
  token_id?: string;
  /** The tool or prompt name the agent used, when `services.<name>.expose` makes it differ from `input.tool.name`. */
  exposed_name?: string;
  /** The call's trace context (tracing on): written so a decision and its trace find each other. */
  trace?: { trace_id: string; span_id: string };
  /** The caller's own token, only to find and censor it (in any encoding) in logged arguments; never written. */
  credential?: string;
}

/** Input of `AuditLog.outcome()`. Everything but `decision_id` and `outcome` is optional. */
export interface OutcomeInput {
  decision_id: string;
  outcome: AuditOutcome;
  /** Safe, stable error code and message (a GatewayError's), for every outcome but `ok`. */
  error?: { code: string; message: string };
  /** Time spent waiting for the service, in microseconds. */
  service_us?: number;
  /** End-to-end time of the call in microseconds; defaults to the time since `decision()` was called. */
  total_us?: number;
  response_bytes?: number;
  /** Data categories of the result (policy and service labels). */
  data_labels?: string[];
  /** How the consent obligation went (never the arguments). */
  consent?: OutcomeRecord['consent'];
  /** What the decision's redact obligation removed from the result, counted per category (never the values). */
  redacted?: OutcomeRecord['redacted'];
  /** The caller's own token, only to find and censor it in a logged result; never written. */
  credential?: string;
  /** The tool result; logged (redacted) only when `log_results` is on. */
  result?: unknown;
}

/** Input of `AuditLog.event()`: authentication failures, limit refusals, reloads. */
export interface EventInput {
  type: AuditEventType;
  request_id?: string | null;
  session_id?: string | null;
  requested_by?: string | null;
  /** Known only when the principal was established (limit refusals); never for auth failures. */
  principal?: Pick<Principal, 'id' | 'type' | 'issuer'> | null;
  client?: { id: string | null };
  method?: string;
  tool?: string;
  /** The name the agent used, when it differs from the canonical `tool`. */
  exposed_name?: string;
  /**
   * The service that owns `tool`, set by callers that know it. Without it, the text before the first
   * '.' of `tool` only when that names a configured service (`AuditOptions.services`); else none.
   */
  service?: string;
  decision_id?: string;
  error?: { code: string; message: string };
  details?: Record<string, unknown>;
}

/** What a write resolves with: where the record sits in the chain. */
export interface AuditReceipt {
  decision_id?: string;
  seq: number;
  hash: string;
}
