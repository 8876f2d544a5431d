/**
 * The audit record: one JSON line per decision, outcome or event, hash-chained. Field names follow
 * OPA's decision-log event where they mean the same thing (`decision_id`, `timestamp`,
 * `requested_by`, `input`, `result`, `bundles.<name>.revision`, `metrics`, `labels`, `masked`);
 * the rest are ours. The JSON Schema is schemas/audit-event.schema.json; keep them in step.
 */
import type { Decision, DecisionReason, PolicyInput, Principal } from '../types.js';

/** Format version of a record line; the first member of every line (it sorts before all others). */
export const AUDIT_FORMAT_VERSION = 1;

/** `prev_hash` of the very first record of a chain (the genesis marker). */
export const GENESIS_HASH = 'sha256:' + '0'.repeat(64);

export type AuditKind = 'decision' | 'outcome' | 'event';

/**
 * How a forwarded call ended. `refused`: the gateway stopped it after an allow (rate limit, consent,
 * obligation). `input_required`: a 2026-era service asked the agent for input; the agent's retry is a
 * new call with its own decision.
 */
export type AuditOutcome = 'ok' | 'tool_error' | 'service_error' | 'timeout' | 'cancelled' | 'refused' | 'input_required';

export type AuditEventType =
  | 'auth_failure'
  | 'limit_refused'
  | 'config_reload'
  | 'policy_reload'
  | 'audit_opened'
  | 'audit_recovered'
  | 'shutdown';

export interface AuditPrincipal {
  id: string;
  type: Principal['type'];
  issuer: string;
  groups?: string[];
  token_id?: string;
}

/** Latencies in nanoseconds, named like OPA's `metrics` timers. */
export interface AuditMetrics {
  timer_policy_eval_ns?: number;
  timer_service_ns?: number;
  timer_total_ns?: number;
}

/** Members shared by every record kind. */
export interface AuditRecordBase {
  _v: typeof AUDIT_FORMAT_VERSION;
  kind: AuditKind;
  /** Monotonic across file rotations and restarts. */
  seq: number;
  /** `hash` of the previous record, or GENESIS_HASH. */
  prev_hash: string;
  /** sha256 over the record's canonical JSON without `hash` (which is the line minus `,"hash":...`). */
  hash: string;
  /** RFC 3339 with milliseconds, UTC. */
  timestamp: string;
  labels: { app: 'micro-mcp'; id: string; version: string };
  decision_id?: string;
  request_id?: string | null;
  session_id?: string | null;
  /** The caller's address (OPA: "identifier for client that executed policy query"). */
  requested_by?: string | null;
  principal?: AuditPrincipal | null;
  client?: { id: string | null };
  method?: string;
  /** Namespaced tool name, `fs.read`. */
  tool?: string;
  /** The service (tool namespace), `fs`. */
  service?: string;
  purpose?: string | null;
  error?: { code: string; message: string };
  metrics?: AuditMetrics;
  /** JSON Pointers censored by redaction in `input` / `output` / `details`. */
  masked?: string[];
}

export interface DecisionRecord extends AuditRecordBase {
  kind: 'decision';
  decision_id: string;
  tool_definition_hash?: string;
  scopes: string[];
  /** The policy decision (OPA's `result`). Obligations are logged redacted. */
  result: { allow: boolean; reasons: DecisionReason[]; obligations?: Record<string, unknown> };
  /** OPA's `bundles`: the revision of the policy set that decided. */
  bundles: { policy: { revision: string } };
  /** sha256 of the canonical JSON of the call's arguments; always present for calls. */
  arguments_digest?: string;
  /** Redacted arguments and resource, only when `log_arguments` is on. */
  input?: { arguments?: unknown; resource?: unknown };
}

export interface OutcomeRecord extends AuditRecordBase {
  kind: 'outcome';
  decision_id: string;
  outcome: AuditOutcome;
  response_bytes?: number;
  /** Redacted tool result, only when `log_results` is on. */
  output?: unknown;
}

export interface EventRecord extends AuditRecordBase {
  kind: 'event';
  type: AuditEventType;
  /** Redacted, event-specific detail (reload revision, limit name, ...). */
  details?: Record<string, unknown>;
}

export type AuditRecord = DecisionRecord | OutcomeRecord | EventRecord;

// ---- what the gateway passes in -------------------------------------------------------------

/** Input of `AuditLog.decision()`: the PolicyInput the engines saw and their Decision. */
export interface DecisionInput {
  input: PolicyInput;
  decision: Decision;
  /** Supply to correlate with an id issued elsewhere; otherwise a UUID is generated. */
  decision_id?: string;
  /** The token's `jti`, for correlation (never the token). */
  token_id?: string;
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
