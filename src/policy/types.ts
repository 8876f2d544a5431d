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
  obligations: Record<string, unknown>;
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
  /** Releases engine memory. Idempotent. */
  close(): void;
}

/** A logger shape that pino satisfies; messages never carry arguments or secrets. */
export interface PolicyLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}
