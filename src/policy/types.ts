/**
 * Types of the policy module: the engine interface both engines implement, and the `policy`
 * section of the gateway config (YAML, snake_case keys, schemas/config-policy.schema.json).
 */
import type { DecisionReason, PolicyInput } from '../types.js';

export type EngineName = 'rego' | 'cedar';

export const ENGINE_NAMES: readonly EngineName[] = ['rego', 'cedar'];

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

/** The `policy` section of the config. Relative paths resolve against the config's base dir. */
export interface PolicyConfig {
  /** Engines that must all allow (deny overrides). Default [rego, cedar]. */
  engines?: EngineName[];
  rego?: {
    /** Rego sources, compiled at load with `opa build -t wasm`. Default "policies/rego". */
    dir?: string;
    /** A prebuilt bundle (`micro-mcp policy build`); when set, `dir` is ignored and no opa CLI is needed. */
    bundle?: string;
  };
  cedar?: {
    /** Directory with schema.cedarschema and *.cedar. Default "policies/cedar". */
    dir?: string;
  };
  /** Per-service (namespace) engine lists overriding `engines`, e.g. { everything: [rego] }. */
  services?: Record<string, EngineName[]>;
  /** An engine evaluation slower than this is treated as an error (deny). Default 50. */
  decision_timeout_ms?: number;
  /** Recompile and swap on file changes. Default true. */
  watch?: boolean;
  /** Path to the opa CLI; default $MICRO_MCP_OPA, then <repo>/.tools/bin/opa, then opa on PATH. */
  opa_path?: string;
}

/** A logger shape that pino satisfies; messages never carry arguments or secrets. */
export interface PolicyLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}
