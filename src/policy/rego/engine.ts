/**
 * The Rego engine: a WASM policy compiled by `opa build -t wasm`, evaluated in-process with
 * @open-policy-agent/opa-wasm. One evaluation of the package entrypoint yields allow, reasons
 * and obligations together. Compiled from sources, the policy is sent only the input it can read
 * (what `opa deps` reports), and its answers are memoised on that when it calls no
 * nondeterministic builtin.
 */
import '../wasm-guard.js';
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import type { DecisionReason, PolicyInput } from '../../types.js';
import { DecisionMemo } from '../memo.js';
import { compileError } from '../problems.js';
import { EngineError, type EngineResult, type PolicyEngine } from '../types.js';
import { type InputReads, REGO_ENTRYPOINT, type RegoBundle } from './bundle.js';

/**
 * OPA's nondeterministic builtins (`opa capabilities`: "nondeterministic": true). None is compiled
 * into the WASM module: a policy calling one imports it from the host, by name. opa-wasm 1.x
 * implements none of them, so such a call fails (and denies) today; a policy importing one is
 * still never memoised, should a later opa-wasm implement it.
 */
const NONDETERMINISTIC = new Set([
  'http.send',
  'io.jwt.decode_verify',
  'io.jwt.encode_sign',
  'io.jwt.encode_sign_raw',
  'json.match_schema',
  'json.verify_schema',
  'net.lookup_ip_addr',
  'opa.runtime',
  'rand.intn',
  'time.now_ns',
  'uuid.rfc4122',
]);

type WasmFunction = (...args: number[]) => number;

/** An export of the policy's WASM module (the OPA WASM ABI), or null. */
function exported(policy: LoadedPolicy, name: string): WasmFunction | null {
  const inst = policy.wasmInstance;
  const f = ('exports' in inst ? inst.exports : inst.instance.exports)[name];
  return typeof f === 'function' ? (f as WasmFunction) : null;
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

/** The builtins a loaded policy imports from the host, by the OPA WASM ABI (`builtins`, `opa_json_dump`); null if unreadable. */
function hostBuiltins(policy: LoadedPolicy): string[] | null {
  const builtins = exported(policy, 'builtins');
  const dump = exported(policy, 'opa_json_dump');
  if (builtins === null || dump === null) return null;
  const addr = dump(builtins());
  const mem = new Uint8Array(policy.mem.buffer);
  const end = mem.indexOf(0, addr);
  if (end < 0) return null;
  try {
    const map = JSON.parse(DECODER.decode(mem.subarray(addr, end))) as unknown;
    return map !== null && typeof map === 'object' ? Object.keys(map) : null;
  } catch {
    return null;
  }
}

/** Input paths as a tree: a key maps to the keys read below it, or to true when all of it is read. */
type ReadTree = Map<string, ReadTree | true>;

function readTree(reads: readonly (readonly string[])[]): ReadTree {
  const root: ReadTree = new Map();
  for (const path of reads) {
    let node = root;
    for (let i = 0; i < path.length; i++) {
      const k = path[i] as string;
      const at = node.get(k);
      if (at === true) break; // a shorter path already reads all of it
      if (i === path.length - 1) node.set(k, true);
      else if (at === undefined) {
        const next: ReadTree = new Map();
        node.set(k, next);
        node = next;
      } else node = at;
    }
  }
  return root;
}

/**
 * The part of `v` a policy can read. A key absent from `v` stays absent, and a value that is not an
 * object is kept whole (a key below a list or a string reads nothing), so every reference the
 * policy makes resolves as it would against the whole input.
 */
function project(v: object, tree: ReadTree): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, sub] of tree) {
    if (!Object.hasOwn(v, k)) continue;
    const x: unknown = Reflect.get(v, k);
    out[k] = sub === true || x === null || typeof x !== 'object' || Array.isArray(x) ? x : project(x, sub);
  }
  return out;
}

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
  /** What of the input the policy can read; null: all of it. */
  readonly #reads: ReadTree | null;
  /** Answers by the input they were given; null when the policy calls a nondeterministic builtin or reads the whole input. */
  readonly #memo: DecisionMemo | null;

  private constructor(policy: LoadedPolicy, entrypoint: number, revision: string, reads: ReadTree | null, memo: boolean) {
    this.#policy = policy;
    this.#entrypoint = entrypoint;
    this.revision = revision;
    this.#reads = reads;
    this.#memo = memo && reads !== null ? new DecisionMemo() : null;
  }

  /** Whether answers are memoised (the policy's reads are known and it is deterministic). */
  get memoised(): boolean {
    return this.#memo !== null;
  }

  /**
   * Instantiates a bundle; rejects with ERR_POLICY_COMPILE when it lacks the micro_mcp/authz entrypoint.
   * `reads`: what `opa deps` found the policy reads (buildRegoBundle); a bundle built elsewhere is sent the whole input.
   */
  static async fromBundle(bundle: RegoBundle, label: string, reads: InputReads = null): Promise<RegoEngine> {
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
    // Before setData: reading the builtins allocates on the WASM heap, which setData then resets.
    const builtins = hostBuiltins(policy);
    policy.setData(bundle.data);
    const deterministic = builtins !== null && !builtins.some((b) => NONDETERMINISTIC.has(b));
    return new RegoEngine(policy, id, bundle.revision, reads === null ? null : readTree(reads), deterministic);
  }

  evaluate(input: PolicyInput): EngineResult {
    const policy = this.#policy;
    if (policy === null) throw new EngineError('ERR_ENGINE_CLOSED', 'rego engine is closed');
    // The JSON the policy is sent is the memo key: a policy that reads neither the arguments nor the
    // time answers a call it has answered before (echo with new text) from the memo.
    const json = JSON.stringify(this.#reads === null ? input : project(input, this.#reads));
    const hit = this.#memo?.get(json);
    if (hit !== undefined) return hit;
    const result = this.#evaluate(policy, json);
    return this.#memo === null ? result : this.#memo.remember(json, result);
  }

  #evaluate(policy: LoadedPolicy, json: string): EngineResult {
    let rs: unknown;
    try {
      // As the UTF-8 bytes of its JSON: opa-wasm copies them into WASM memory as they are.
      const bytes = ENCODER.encode(json);
      rs = policy.evaluate(bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer, this.#entrypoint);
    } catch (e) {
      // A conflict, a builtin error (halt), an out-of-memory: the policy failed on this input.
      // opa-wasm throws plain {message} objects too (a builtin it does not implement).
      const message = e !== null && typeof e === 'object' && 'message' in e && typeof e.message === 'string' ? e.message : String(e);
      throw new EngineError('ERR_ENGINE_EVALUATION', `rego evaluation failed: ${message}`);
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
