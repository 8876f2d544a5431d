/**
 * Types of the policy module: the engine interface both engines implement, and the `policy`
 * section of the gateway config (YAML, snake_case keys, schemas/config-policy.schema.json).
 */
import type { PolicyConfigInput } from '../../schemas/generated/config.js';
import type { DecisionReason, PolicyInput } from '../types.js';

/**
 * The `policy` section as a config file or a caller writes it (type generated from
 * schemas/config-policy.schema.json); loadPolicies fills in the defaults. Relative paths resolve
 * against the config file's directory.
 */
export type PolicyConfig = PolicyConfigInput;

export type EngineName = NonNullable<PolicyConfig['engines']>[number];

/** What one engine says about one input, before the combiner. */
export interface EngineResult {
  allow: boolean;
  /** Why: the grants when allowed, the denials when denied. Never empty. */
  reasons: DecisionReason[];
  /**
   * Raw obligations as the engine states them, one object per source: Rego's `obligations`
   * document, or each deciding Cedar policy's obligation annotations. Checked and merged by the
   * combiner (obligations.ts).
   */
  obligations: readonly Readonly<Record<string, unknown>>[];
}

/**
 * One policy engine, loaded and ready. `evaluate` is synchronous and in-process (OPA WASM,
 * Cedar pre-parsed); it throws on an engine error or an undefined result, which the combiner
 * turns into a deny.
 */
export interface PolicyEngine {
  readonly name: EngineName;
  /** Hash of the sources (or the bundle's manifest revision) this engine was loaded from. */
  readonly revision: string;
  evaluate(input: PolicyInput): EngineResult;
  /**
   * One throwaway evaluation that pays the engine's one-time WASM set-up before real decisions
   * (policy-set.ts warmUp); leaves nothing behind that a real decision would not use. Throws like evaluate.
   */
  warmUp(input: PolicyInput): void;
  /** Releases engine memory. Idempotent. */
  close(): void;
}

/** A logger shape that pino satisfies; messages never carry arguments or secrets. */
export interface PolicyLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

/**
 * Why an engine could not answer, as a stable code for the audit record (the message stays in the
 * operator's log): ERR_ENGINE_EVALUATION (the policy failed while evaluating, e.g. a Rego conflict or
 * a Cedar policy error), ERR_ENGINE_UNDEFINED (no allow/result), ERR_ENGINE_REQUEST_INVALID (the
 * engine refused the request), ERR_ENGINE_CLOSED, ERR_ENGINE_TIMEOUT, ERR_ENGINE_NOT_LOADED,
 * ERR_ENGINE_NONE (no engine configured), ERR_POLICY_UNAVAILABLE (the policy set itself failed).
 */
export type EngineErrorCode =
  | 'ERR_ENGINE_EVALUATION'
  | 'ERR_ENGINE_UNDEFINED'
  | 'ERR_ENGINE_REQUEST_INVALID'
  | 'ERR_ENGINE_CLOSED'
  | 'ERR_ENGINE_TIMEOUT'
  | 'ERR_ENGINE_NOT_LOADED'
  | 'ERR_ENGINE_NONE'
  | 'ERR_POLICY_UNAVAILABLE';

/** An engine failure with its stable code; the combiner turns it into a deny (engine_error). */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
  }
}
