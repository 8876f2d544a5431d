/**
 * The Rego engine: a WASM policy compiled by `opa build -t wasm`, evaluated in-process with
 * @open-policy-agent/opa-wasm. One evaluation of the package entrypoint yields allow, reasons
 * and obligations together.
 */
import '../wasm-guard.js';
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import type { DecisionReason, PolicyInput } from '../../types.js';
import { compileError } from '../problems.js';
import { EngineError, type EngineResult, type PolicyEngine } from '../types.js';
import { REGO_ENTRYPOINT, type RegoBundle } from './bundle.js';

/** Splits a Rego reason "<id>: <message>" (the contract's convention) into id and message. */
function parseRegoReason(s: string): DecisionReason {
  const i = s.indexOf(': ');
  if (i <= 0) return { engine: 'rego', id: s, message: s };
  return { engine: 'rego', id: s.slice(0, i), message: s.slice(i + 2) };
}

interface AuthzDocument {
  allow?: unknown;
  reasons?: unknown;
  obligations?: unknown;
}

export class RegoEngine implements PolicyEngine {
  readonly name = 'rego' as const;
  readonly revision: string;
  #policy: LoadedPolicy | null;
  readonly #entrypoint: number;

  private constructor(policy: LoadedPolicy, entrypoint: number, revision: string) {
    this.#policy = policy;
    this.#entrypoint = entrypoint;
    this.revision = revision;
  }

  /** Instantiates a bundle; rejects with ERR_POLICY_COMPILE when it lacks the micro_mcp/authz entrypoint. */
  static async fromBundle(bundle: RegoBundle, label: string): Promise<RegoEngine> {
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm);
    } catch (e) {
      throw compileError([{ engine: 'rego', file: label, line: null, reason: `policy.wasm does not load: ${String(e)}` }]);
    }
    const entrypoints = policy.entrypoints as Record<string, number>;
    const id = entrypoints[REGO_ENTRYPOINT];
    if (typeof id !== 'number') {
      throw compileError([{ engine: 'rego', file: label, line: null, reason: `bundle has no entrypoint ${REGO_ENTRYPOINT}` }]);
    }
    policy.setData(bundle.data);
    return new RegoEngine(policy, id, bundle.revision);
  }

  evaluate(input: PolicyInput): EngineResult {
    const policy = this.#policy;
    if (policy === null) throw new EngineError('ERR_ENGINE_CLOSED', 'rego engine is closed');
    let rs: unknown;
    try {
      rs = policy.evaluate(input, this.#entrypoint);
    } catch (e) {
      // A conflict, a builtin error (halt), an out-of-memory: the policy failed on this input.
      throw new EngineError('ERR_ENGINE_EVALUATION', `rego evaluation failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    const doc = Array.isArray(rs) ? ((rs[0] as { result?: unknown } | undefined)?.result as AuthzDocument | undefined) : undefined;
    if (doc === undefined || doc === null || typeof doc !== 'object') throw new EngineError('ERR_ENGINE_UNDEFINED', 'rego result is undefined');
    // An undefined or non-boolean allow is an error, not a deny decision: the combiner denies
    // either way, but the audit record then says the policy is broken.
    if (typeof doc.allow !== 'boolean') throw new EngineError('ERR_ENGINE_UNDEFINED', 'rego allow is undefined or not a boolean');
    const raw = Array.isArray(doc.reasons) ? doc.reasons.filter((r): r is string => typeof r === 'string') : [];
    const reasons = raw.sort().map(parseRegoReason);
    if (reasons.length === 0) {
      reasons.push(
        doc.allow
          ? { engine: 'rego', id: 'allow', message: 'allowed by policy' }
          : { engine: 'rego', id: 'default_deny', message: 'no policy grants this request' },
      );
    }
    const obligations =
      doc.obligations !== null && typeof doc.obligations === 'object' && !Array.isArray(doc.obligations) ? (doc.obligations as Record<string, unknown>) : {};
    return { allow: doc.allow, reasons, obligations: Object.keys(obligations).length > 0 ? [obligations] : [] };
  }

  warmUp(input: PolicyInput): void {
    this.evaluate(input);
  }

  close(): void {
    this.#policy = null;
  }
}
