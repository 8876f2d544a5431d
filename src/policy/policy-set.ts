/**
 * The loaded policy set: engines, the combiner (deny overrides, fail closed), and hot reload
 * with an atomic swap that keeps the last good set when an edit is broken.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { POLICY_CONFIG_DEFAULTS as DEFAULTS } from '../../schemas/generated/config.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { Decision, DecisionReason, EngineVerdict, Obligations, PolicyInput, Principal } from '../types.js';
import { CedarEngine } from './cedar/engine.js';
import { CompileCache, defaultCacheDir } from './compile-cache.js';
import { buildPolicyInput, resourceExtractor } from './input.js';
import { isPolicyMethod, POLICY_METHODS } from './methods.js';
import { isObligationProblem, mergeObligations, readObligations } from './obligations.js';
import { buildRegoBundle, readRegoBundle } from './rego/bundle.js';
import { RegoEngine } from './rego/engine.js';
import { resolveOpa } from './rego/opa.js';
import { toolFacts } from './tools.js';
import { EngineError, type EngineErrorCode, type EngineName, type PolicyConfig, type PolicyEngine, type PolicyLogger } from './types.js';

/** A reload waits this long after the last change, so that one save (or checkout) is one reload. */
const RELOAD_DEBOUNCE_MS = 150;

export interface LoadPoliciesHooks {
  /** Base for relative paths in the config (the config file's dir); default process.cwd(). */
  baseDir?: string;
  /** The named resource facts the services declare (config `resource.facts`): Rego is typed with them. */
  resourceFacts?: readonly string[];
  /** Called after a reload swapped in a new set. */
  onReload?: (info: { revision: string; previous: string }) => void;
  /** Called when a reload failed; the last good set keeps running. */
  onReloadError?: (err: GatewayError) => void;
  /**
   * Called after each engine evaluated (metrics and traces): its start (performance.now() ms), how
   * long it took and an error code when it failed. Synchronous, inside decide().
   */
  onEvaluated?: (engine: EngineName, startMs: number, durationMs: number, error?: EngineErrorCode) => void;
  log?: PolicyLogger;
}

/** The resolved, validated form of PolicyConfig. */
export interface ResolvedPolicyConfig {
  engines: EngineName[];
  rego: { dir: string | null; bundle: string | null };
  cedar: { dir: string };
  services: Record<string, EngineName[]>;
  decision_timeout_ms: number;
  watch: boolean;
  opa_path: string | undefined;
  fact_names: readonly string[];
  /** The compile cache's directory, or null when `cache: false`. */
  cache_dir: string | null;
}

/**
 * Applies the schema's defaults (DEFAULTS, generated from schemas/config-policy.schema.json: fail
 * closed, every engine must allow) and resolves paths. The section's shapes and ranges (engine
 * names, non-empty unique lists, decision_timeout_ms > 0) are the schema's, checked once by
 * loadConfig; the one rule left here relates two keys. Throws ERR_CONFIG_INVALID with the key path.
 */
function resolvePolicyConfig(config: PolicyConfig = {}, baseDir: string = process.cwd(), factNames: readonly string[] = []): ResolvedPolicyConfig {
  const engines = [...(config.engines ?? DEFAULTS.engines)];
  const services: Record<string, EngineName[]> = {};
  for (const [ns, list] of Object.entries(config.services ?? {})) {
    // Stays here: JSON Schema cannot say that the items of one list must be among those of another.
    const key = `policy.services.${ns}`;
    for (const e of list) {
      if (!engines.includes(e)) throw new GatewayError('ERR_CONFIG_INVALID', `${key} names ${e}, which policy.engines does not load`, { key });
    }
    services[ns] = [...list];
  }
  const bundle = config.rego?.bundle;
  return {
    engines,
    rego: {
      bundle: bundle !== undefined ? resolve(baseDir, bundle) : null,
      dir: bundle !== undefined ? null : resolve(baseDir, config.rego?.dir ?? DEFAULTS.rego.dir),
    },
    cedar: { dir: resolve(baseDir, config.cedar?.dir ?? DEFAULTS.cedar.dir) },
    services,
    decision_timeout_ms: config.decision_timeout_ms ?? DEFAULTS.decision_timeout_ms,
    watch: config.watch ?? DEFAULTS.watch,
    opa_path: config.opa_path,
    fact_names: [...new Set(factNames)].sort(),
    cache_dir: (config.cache ?? DEFAULTS.cache) ? resolve(baseDir, config.cache_dir ?? defaultCacheDir()) : null,
  };
}

/** One loaded generation of engines; swapped as a whole. */
interface Generation {
  engines: Map<EngineName, PolicyEngine>;
  revision: string;
}

/** Loads every configured engine; rejects with ERR_POLICY_COMPILE naming file, line and reason. */
async function loadGeneration(cfg: ResolvedPolicyConfig, log?: PolicyLogger): Promise<Generation> {
  const engines = new Map<EngineName, PolicyEngine>();
  const cache = cfg.cache_dir === null ? null : CompileCache.open(cfg.cache_dir, log);
  try {
    // Both engines load in parallel; uncached, Cedar's strict validation dominates (~1.5 s on 2 busy cores).
    const [rego, cedarEngine] = await Promise.all([
      cfg.engines.includes('rego') ? loadRego(cfg, cache) : Promise.resolve(null),
      cfg.engines.includes('cedar') ? CedarEngine.load(cfg.cedar.dir, cache) : Promise.resolve(null),
    ]);
    if (rego !== null) engines.set('rego', rego);
    if (cedarEngine !== null) engines.set('cedar', cedarEngine);
  } catch (e) {
    for (const en of engines.values()) en.close();
    throw e;
  }
  warmUp(engines);
  const h = createHash('sha256');
  for (const [name, en] of [...engines].sort(([a], [b]) => a.localeCompare(b))) h.update(`${name}=${en.revision}\n`);
  return { engines, revision: `sha256:${h.digest('hex')}` };
}

/**
 * One throwaway evaluation per engine before a generation serves. The first evaluation in a
 * process pays one-time WASM set-up (measured here: Cedar 16-42 ms, Rego ~5 ms, then under
 * 1 ms), which under load exceeded the decision timeout (then 50 ms) and failed the first real
 * decision closed, hiding tools from the first tools/list. The answer is ignored. Cedar answers
 * against its whole set here (CedarEngine.warmUp): cutting slices for the made-up tools below cost
 * ~45 ms of the start and kept three slices no call uses; a tool's first tools/call now pays the
 * first partial evaluation instead (~5 ms more, once).
 */
function warmUp(engines: Map<EngineName, PolicyEngine>): void {
  const principal: Principal = {
    id: 'micro-mcp-warm-up',
    type: 'user',
    issuer: 'micro-mcp',
    groups: ['micro-mcp-warm-up'],
    attributes: {},
    scopes: ['micro-mcp-warm-up'],
    client: { id: null },
    purpose: null,
  };
  // V8 compiles WASM functions lazily, on first use: exercise the list path and the
  // resource-fact paths (a path, a URL) that real decisions take.
  const inputs = [
    buildPolicyInput({ method: 'tools/list', principal, tool: toolFacts('warm-up.tool'), context: { request_id: 'warm-up' } }),
    buildPolicyInput({
      method: 'tools/call',
      principal,
      tool: toolFacts('warm-up.path'),
      arguments: { path: '/warm-up' },
      resource: resourceExtractor({ kind: 'path' }),
      context: { request_id: 'warm-up' },
    }),
    buildPolicyInput({
      method: 'tools/call',
      principal,
      tool: toolFacts('warm-up.url'),
      arguments: { url: 'https://warm-up.invalid/' },
      resource: resourceExtractor({ kind: 'url' }),
      context: { request_id: 'warm-up' },
    }),
  ];
  for (const en of engines.values()) {
    for (const input of inputs) {
      try {
        en.warmUp(input);
      } catch {
        // An engine that errors here errors (and denies) at decision time too; loading is not the place to refuse it.
      }
    }
  }
}

async function loadRego(cfg: ResolvedPolicyConfig, cache: CompileCache | null): Promise<RegoEngine> {
  if (cfg.rego.bundle !== null) {
    let tarball: Buffer;
    try {
      tarball = await readFile(cfg.rego.bundle);
    } catch (e) {
      throw new GatewayError(
        'ERR_POLICY_COMPILE',
        `policy set rejected: ${cfg.rego.bundle}: cannot read bundle (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    return RegoEngine.fromBundle(readRegoBundle(tarball, cfg.rego.bundle), cfg.rego.bundle);
  }
  const dir = cfg.rego.dir as string;
  const opa = resolveOpa(cfg.opa_path);
  const built = await buildRegoBundle(opa, dir, cfg.fact_names, cache);
  try {
    return await RegoEngine.fromBundle(readRegoBundle(built.tarball, dir), dir, built.reads);
  } catch (e) {
    if (built.cacheKey === undefined || cache === null) throw e;
    // A cache entry that does not load (corrupt on disk) is not a policy error: compile as if it were not there.
    const fresh = await buildRegoBundle(opa, dir, cfg.fact_names, cache, { refresh: true });
    return RegoEngine.fromBundle(readRegoBundle(fresh.tarball, dir), dir, fresh.reads);
  }
}

const errorReason = (engine: EngineName | 'gateway', message: string): DecisionReason => ({ engine, id: 'engine_error', message });

export class PolicySet {
  #gen: Generation;
  readonly #cfg: ResolvedPolicyConfig;
  readonly #hooks: LoadPoliciesHooks;
  readonly #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  /** @internal use loadPolicies */
  constructor(gen: Generation, cfg: ResolvedPolicyConfig, hooks: LoadPoliciesHooks) {
    this.#gen = gen;
    this.#cfg = cfg;
    this.#hooks = hooks;
  }

  /** Hash over the revisions of the loaded engines (Rego bundle revision, Cedar source hash). */
  get revision(): string {
    return this.#gen.revision;
  }

  /** Engines that decide for a service namespace (per-service override, else the default list). */
  enginesFor(namespace: string): EngineName[] {
    return this.#cfg.services[namespace] ?? this.#cfg.engines;
  }

  /**
   * Decides one input, synchronously. Every engine used must allow (deny overrides); an engine
   * that throws, returns an undefined result or exceeds decision_timeout_ms denies with reason
   * id "engine_error". Reasons: every engine's grants when allowed, only the denying engines'
   * reasons when denied. Obligations (obligations.ts): each allowing engine's are checked and merged,
   * the strictest winning; one the gateway does not know or cannot read denies (`unknown_obligation`,
   * `obligation_invalid`), as does a conflict between engines. When denied only `step_up_scopes`.
   */
  decide(input: PolicyInput, engines?: readonly EngineName[]): Decision {
    const t0 = performance.now();
    const gen = this.#gen; // read once: a concurrent swap never mixes two generations
    const m = isPolicyMethod(input.method) ? POLICY_METHODS[input.method] : undefined;
    if (m === undefined || m.action !== input.action || m.phase !== input.phase) {
      // Refused before any engine sees it: an engine asked about a method it was never written for
      // could answer anything.
      return {
        allow: false,
        reasons: [{ engine: 'gateway', id: 'unknown_method', message: 'this MCP method is not decided by the gateway policy' }],
        engines: [],
        obligations: {},
        policy_revision: gen.revision,
        eval_us: Math.round((performance.now() - t0) * 1000),
      };
    }
    const names = engines ?? this.enginesFor(input.tool.namespace);
    const allowReasons: DecisionReason[] = [];
    const denyReasons: DecisionReason[] = [];
    const verdicts: EngineVerdict[] = [];
    let obligations: Obligations = {};
    const stepUp = new Set<string>();
    /** A denial the gateway adds when it cannot act on what an allowing engine requires. */
    let obligationDenial: DecisionReason | undefined;
    const failed = (engine: EngineName | 'gateway', code: EngineErrorCode, message: string): void => {
      const reason = errorReason(engine, message);
      denyReasons.push(reason);
      verdicts.push({ engine, allow: false, reasons: [reason], error: code });
    };
    if (names.length === 0) failed('gateway', 'ERR_ENGINE_NONE', 'no policy engine is configured for this request');
    for (const name of names) {
      const engine = gen.engines.get(name);
      if (engine === undefined) {
        failed(name, 'ERR_ENGINE_NOT_LOADED', `${name} engine is not loaded`);
        continue;
      }
      const start = performance.now();
      let error: EngineErrorCode | undefined;
      try {
        const r = engine.evaluate(input);
        // WASM evaluation cannot be pre-empted; a too-slow answer is discarded, failing closed.
        if (performance.now() - start > this.#cfg.decision_timeout_ms) {
          error = 'ERR_ENGINE_TIMEOUT';
          failed(name, 'ERR_ENGINE_TIMEOUT', `${name} exceeded the decision timeout of ${this.#cfg.decision_timeout_ms} ms`);
        } else if (r.allow) {
          allowReasons.push(...r.reasons);
          verdicts.push({ engine: name, allow: true, reasons: r.reasons });
          for (const raw of r.obligations) {
            if (obligationDenial !== undefined) break;
            const ob = readObligations(raw);
            if (isObligationProblem(ob)) {
              obligationDenial = { engine: 'gateway', id: ob.id, message: `${name}: ${ob.message}` };
              continue;
            }
            const merged = mergeObligations(obligations, ob);
            if (merged === null) obligationDenial = { engine: 'gateway', id: 'obligation_invalid', message: 'the engines state conflicting reach obligations' };
            else obligations = merged;
          }
        } else {
          denyReasons.push(...r.reasons);
          verdicts.push({ engine: name, allow: false, reasons: r.reasons });
          // The one obligation a denial keeps: which scopes would lift it (HTTP 403 step-up).
          for (const raw of r.obligations) {
            const ob = readObligations({ step_up_scopes: raw.step_up_scopes ?? [] });
            if (!isObligationProblem(ob)) for (const x of ob.step_up_scopes ?? []) stepUp.add(x);
          }
        }
      } catch (e) {
        // Agents see only that the engine failed; where in the policy it failed is for operators,
        // and the audit record keeps the cause as a stable code.
        this.#hooks.log?.error({ engine: name, err: e instanceof Error ? e.message : String(e) }, 'policy evaluation failed: denied');
        error = e instanceof EngineError ? e.code : 'ERR_ENGINE_EVALUATION';
        failed(name, error, `${name} evaluation failed`);
      }
      this.#hooks.onEvaluated?.(name, start, performance.now() - start, error);
    }
    if (obligationDenial !== undefined) {
      // Allowed by the engines, but on a condition the gateway cannot meet: fail closed.
      denyReasons.push(obligationDenial);
      verdicts.push({ engine: 'gateway', allow: false, reasons: [obligationDenial] });
    }
    const allow = denyReasons.length === 0;
    return {
      allow,
      reasons: allow ? allowReasons : denyReasons,
      engines: verdicts,
      // A denial keeps only the scopes that would lift it (HTTP 403 step-up).
      obligations: allow ? obligations : stepUp.size > 0 ? { step_up_scopes: [...stepUp].sort() } : {},
      policy_revision: gen.revision,
      eval_us: Math.round((performance.now() - t0) * 1000),
    };
  }

  /**
   * Recompiles now (what the watcher does) and swaps atomically. Resolves false, keeping the
   * running set, when the new set is broken. Reloads run one at a time, in order.
   */
  reload(): Promise<boolean> {
    const run = this.#chain.then(() => this.#reloadOnce());
    this.#chain = run;
    return run;
  }

  #chain: Promise<boolean> = Promise.resolve(true);

  async #reloadOnce(): Promise<boolean> {
    if (this.#closed) return false;
    const log = this.#hooks.log;
    let next: Generation;
    try {
      next = await loadGeneration(this.#cfg, log);
    } catch (e) {
      const err = isGatewayError(e) ? e : new GatewayError('ERR_POLICY_COMPILE', `policy reload failed: ${String(e)}`);
      log?.error(
        { code: err.code, problems: err.data?.problems, revision: this.#gen.revision },
        `policy reload rejected, keeping the running set: ${err.message}`,
      );
      this.#hooks.onReloadError?.(err);
      return false;
    }
    if (this.#closed) {
      for (const e of next.engines.values()) e.close();
      return false;
    }
    if (next.revision === this.#gen.revision) {
      // The same sources (a touch, a save without changes, a checkout of the same tree): not a new
      // revision, so no swap and no reload event.
      for (const e of next.engines.values()) e.close();
      log?.info({ revision: next.revision }, 'policy reload: unchanged');
      return true;
    }
    const previous = this.#gen;
    this.#gen = next; // the atomic swap: one reference assignment; decide() reads it once
    for (const e of previous.engines.values()) e.close();
    log?.info({ revision: next.revision, previous: previous.revision }, 'policy set reloaded');
    this.#hooks.onReload?.({ revision: next.revision, previous: previous.revision });
    return true;
  }

  /** @internal starts fs watchers on the policy dirs (or the bundle file), debounced. */
  startWatching(): void {
    const targets: { dir: string; only?: string }[] = [];
    if (this.#cfg.engines.includes('rego')) {
      if (this.#cfg.rego.bundle !== null) targets.push({ dir: dirname(this.#cfg.rego.bundle), only: basename(this.#cfg.rego.bundle) });
      else targets.push({ dir: this.#cfg.rego.dir as string });
    }
    if (this.#cfg.engines.includes('cedar')) targets.push({ dir: this.#cfg.cedar.dir });
    for (const t of targets) {
      const w = watch(t.dir, { persistent: false }, (_event, file) => {
        const name = file === null ? '' : String(file);
        if (t.only !== undefined ? name !== t.only : !/\.(rego|cedar|cedarschema|json|ya?ml)$/.test(name)) return;
        this.#schedule();
      });
      w.on('error', (e) => this.#hooks.log?.warn({ dir: t.dir, err: String(e) }, 'policy watcher failed'));
      this.#watchers.push(w);
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.reload();
    }, RELOAD_DEBOUNCE_MS);
    this.#timer.unref();
  }

  /** Stops watching and frees the engines. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    for (const w of this.#watchers) w.close();
    for (const e of this.#gen.engines.values()) e.close();
  }
}

/**
 * Loads the policy set from the `policy` config section. A broken set rejects with
 * GatewayError('ERR_POLICY_COMPILE') naming file, line and reason: the gateway must not start.
 */
export async function loadPolicies(config: PolicyConfig | undefined, hooks: LoadPoliciesHooks = {}): Promise<PolicySet> {
  const cfg = resolvePolicyConfig(config, hooks.baseDir, hooks.resourceFacts);
  const gen = await loadGeneration(cfg, hooks.log);
  const set = new PolicySet(gen, cfg, hooks);
  hooks.log?.info({ revision: gen.revision, engines: [...gen.engines.keys()] }, 'policy set loaded');
  if (cfg.watch) set.startWatching();
  return set;
}
