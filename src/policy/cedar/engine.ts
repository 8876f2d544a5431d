/**
 * The Cedar engine: schema.cedarschema and *.cedar from one directory, validated in strict mode
 * at load, pre-parsed once (preparsePolicySet) and evaluated with
 * statefulIsAuthorized, so a decision never re-parses policy text. A decision is evaluated against
 * the slice of the set whose scope can match its action and tool (./slice.ts), pre-parsed once per
 * pair (for tools/call as the policies' residuals for the tool): the cost of a decision then follows
 * the policies for that tool, not the size of the set.
 */
import '../wasm-guard.js';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { CedarValueJson, DetailedError, EntityJson, Context, PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DecisionReason, PolicyInput, ToolFacts } from '../../types.js';
import { CompileCache } from '../compile-cache.js';
import { DecisionMemo } from '../memo.js';
import { compileError, lineOf, type PolicyProblem } from '../problems.js';
import { EngineError, type EngineResult, type PolicyEngine } from '../types.js';
import { toCedarRequest, toolEntityKey, toolEntityOf } from './request.js';
import { namedAttributes, type PartialEvaluation, partialEvaluations, readsToolEntity, sliceFor, standIn, testedMembers, unsatisfiable } from './slice.js';

const CEDAR_SCHEMA_FILE = 'schema.cedarschema';

/** The raw answer for one request: what `cedar run-tests` compares. */
export interface CedarAnswer {
  decision: 'allow' | 'deny';
  /** Ids (the @id annotations) of the determining policies. */
  reason: string[];
  errors: string[];
}

let generation = 0;

/** Annotations that describe a policy; every other annotation states an obligation. */
const METADATA_ANNOTATIONS = new Set(['id', 'reason', 'parity']);

/**
 * A policy's obligations as its annotations state them: `@obligation("consent")` (a comma list of
 * flags, each true), and one annotation per valued obligation (`@redact("email,secrets")`,
 * `@max_bytes("65536")`, `@labels("pii")`, `@step_up_scopes("fs:read")` on a forbid). Any other
 * annotation is kept under its own name so that the combiner denies it as unknown: a misspelt
 * `@redcat` must not pass as documentation while the redaction it meant is skipped.
 */
function obligationsOf(ann: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ann)) {
    if (METADATA_ANNOTATIONS.has(k)) continue;
    if (k === 'obligation') {
      for (const flag of v.split(',')) if (flag.trim() !== '') out[flag.trim()] = true;
    } else out[k] = v;
  }
  return out;
}

/**
 * A pre-parsed set of a slice: its id in the WASM cache, whether its requests carry the tool's
 * entity, the policies in it as residuals, and the context sets its policies only test for
 * literal members, with those members (slice.ts testedMembers).
 */
interface PreparedSet {
  id: string;
  tool: boolean;
  residuals: readonly string[];
  members: ReadonlyMap<string, ReadonlySet<string>>;
}

/**
 * A slice: its policies, the attribute names they read (null: all), and per context shape (without
 * data_labels, with) the set a decision runs against, pre-parsed on first use from Cedar's partial
 * evaluation of the policies for that shape (tools/call only; dropped once the set is made).
 */
interface Slice {
  policies: readonly string[];
  attributes: ReadonlySet<string> | null;
  partials: Array<PartialEvaluation | null>;
  sets: Array<PreparedSet | undefined>;
}

/** The attributes whose names are in `names`. */
function pick(attrs: Record<string, CedarValueJson>, names: ReadonlySet<string>): Record<string, CedarValueJson> {
  const out: Record<string, CedarValueJson> = {};
  for (const k in attrs) if (names.has(k)) out[k] = attrs[k] as CedarValueJson;
  return out;
}

/** A validated set as the compile cache keeps it. */
interface CachedSet {
  policies: Record<string, string>;
  messages: Record<string, string>;
  parity: Record<string, string>;
  scopes: Record<string, PolicyJson>;
}

/**
 * Pre-parsed slices per engine instance, one per (action, tool) seen. Tools come from the catalog,
 * but the bound keeps a hostile or huge catalog from growing the WASM cache without end.
 */
const SLICES_MAX = 4_096;

function problemsFrom(errors: DetailedError[], file: string, text: string, prefix = ''): PolicyProblem[] {
  return errors.map((e) => {
    const loc = e.sourceLocations?.[0];
    return { engine: 'cedar', file, line: loc === undefined ? null : lineOf(text, loc.start), reason: prefix + e.message };
  });
}

export class CedarEngine implements PolicyEngine {
  readonly name = 'cedar' as const;
  readonly revision: string;
  readonly #psetId: string;
  readonly #messages: ReadonlyMap<string, string>;
  /** Each policy's obligations (from its annotations), by @id; policies without any are absent. */
  readonly #obligations: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
  /** Policy ids annotated `@parity("why")`: rules Rego can only approximate, declared for `policy parity`. */
  readonly parityDeclared: ReadonlyMap<string, string>;
  #closed = false;
  /** Decisions by slice and request. */
  readonly #memo = new DecisionMemo();
  /** Every policy as text (for slices) and as JSON (its scope), by @id, in file order. */
  readonly #texts: ReadonlyMap<string, string>;
  readonly #scopes: ReadonlyMap<string, PolicyJson>;
  /** Pre-parsed slices by "<action>\0<tool entity key>", oldest first. */
  readonly #slices = new Map<string, Slice>();
  #sliceSeq = 0;

  private constructor(
    psetId: string,
    messages: Map<string, string>,
    revision: string,
    parity: Map<string, string>,
    texts: Map<string, string>,
    scopes: Map<string, PolicyJson>,
  ) {
    this.#psetId = psetId;
    this.#texts = texts;
    this.#scopes = scopes;
    this.#messages = messages;
    // Obligations are stated by annotations, which the policies' JSON keeps (also in a cached set).
    const obligations = new Map<string, Readonly<Record<string, unknown>>>();
    for (const [id, json] of scopes) {
      const ob = obligationsOf(json.annotations ?? {});
      if (Object.keys(ob).length > 0) obligations.set(id, Object.freeze(ob));
    }
    this.#obligations = obligations;
    this.parityDeclared = parity;
    this.revision = revision;
  }

  /**
   * Loads, validates (strict; warnings count as failures) and pre-parses the Cedar policy dir.
   * Every policy needs a unique @id; @reason gives the message cited in decisions.
   * Rejects with ERR_POLICY_COMPILE naming file, line and reason. With a compile cache, a set
   * validated before (same schema, files and cedar-wasm version) skips parsing and validation.
   */
  static async load(dir: string, cache: CompileCache | null = null): Promise<CedarEngine> {
    const schemaFile = join(dir, CEDAR_SCHEMA_FILE);
    let schema: string;
    try {
      schema = await readFile(schemaFile, 'utf8');
    } catch (e) {
      throw compileError([{ engine: 'cedar', file: schemaFile, line: null, reason: `cannot read schema (${(e as NodeJS.ErrnoException).code ?? 'error'})` }]);
    }
    const names = (await readdir(dir)).filter((n) => n.endsWith('.cedar')).sort();
    if (names.length === 0) throw compileError([{ engine: 'cedar', file: dir, line: null, reason: 'no *.cedar policy file' }]);
    const texts = new Map<string, string>();
    for (const name of names) texts.set(name, await readFile(join(dir, name), 'utf8'));
    const hash = createHash('sha256').update(schema).update('\0');
    for (const [name, text] of texts) hash.update(name).update('\0').update(text).update('\0');
    const revision = `sha256:${hash.digest('hex')}`;
    const key = CompileCache.key(['cedar-1', cedar.getCedarSDKVersion(), revision]);
    const cached = cache === null ? null : await cache.get('cedar', key);
    if (cached !== null) {
      const hit = CedarEngine.#fromCached(cached, revision);
      if (hit !== null) return hit;
    }
    const engine = CedarEngine.#compile(dir, schemaFile, schema, texts, revision);
    if (cache !== null) await cache.put('cedar', key, Buffer.from(JSON.stringify(engine.#cacheEntry())));
    return engine;
  }

  /** What a cache entry keeps: the validated policies by id, their messages, parity notes and JSON. */
  #cacheEntry(): CachedSet {
    return {
      policies: Object.fromEntries(this.#texts),
      messages: Object.fromEntries(this.#messages),
      parity: Object.fromEntries(this.parityDeclared),
      scopes: Object.fromEntries(this.#scopes),
    };
  }

  /** An engine from a cache entry, or null when the entry is not one (then the set is compiled). */
  static #fromCached(data: Buffer, revision: string): CedarEngine | null {
    let e: CachedSet;
    try {
      e = JSON.parse(data.toString('utf8')) as CachedSet;
    } catch {
      return null;
    }
    if (
      e === null ||
      typeof e !== 'object' ||
      typeof e.policies !== 'object' ||
      typeof e.messages !== 'object' ||
      typeof e.parity !== 'object' ||
      typeof e.scopes !== 'object'
    )
      return null;
    const psetId = `micro-mcp-policies-${++generation}`;
    const ps = cedar.preparsePolicySet(psetId, { staticPolicies: e.policies });
    if (ps.type === 'failure') return null;
    return new CedarEngine(
      psetId,
      new Map(Object.entries(e.messages)),
      revision,
      new Map(Object.entries(e.parity)),
      new Map(Object.entries(e.policies)),
      new Map(Object.entries(e.scopes)),
    );
  }

  static #compile(dir: string, schemaFile: string, schema: string, texts: ReadonlyMap<string, string>, revision: string): CedarEngine {
    const parsedSchema = cedar.checkParseSchema(schema);
    if (parsedSchema.type === 'failure') throw compileError(problemsFrom(parsedSchema.errors, schemaFile, schema));

    const problems: PolicyProblem[] = [];
    const policies: Record<string, string> = {};
    const messages = new Map<string, string>();
    const parity = new Map<string, string>();
    const scopes = new Map<string, PolicyJson>();
    for (const [name, text] of texts) {
      const file = join(dir, name);
      const parsed = cedar.checkParsePolicySet({ staticPolicies: text });
      if (parsed.type === 'failure') {
        problems.push(...problemsFrom(parsed.errors, file, text));
        continue;
      }
      const parts = cedar.policySetTextToParts(text);
      if (parts.type === 'failure') {
        problems.push(...problemsFrom(parts.errors, file, text));
        continue;
      }
      if (parts.policy_templates.length > 0) problems.push({ engine: 'cedar', file, line: null, reason: 'templates are not supported' });
      // Validated keyed by @id, so that a validation error cites the policy's own id rather than
      // the "policy17" Cedar makes up for a set given as one text.
      const own: Record<string, string> = {};
      const offsets = new Map<string, number>();
      let from = 0;
      for (const part of parts.policies) {
        const found = text.indexOf(part, from);
        const offset = found === -1 ? Math.max(0, text.indexOf(part)) : found;
        if (found !== -1) from = found + part.length;
        const line = lineOf(text, offset);
        const json = cedar.policyToJson(part);
        if (json.type === 'failure') {
          problems.push(...problemsFrom(json.errors, file, text));
          continue;
        }
        const ann = json.json.annotations ?? {};
        const id = ann.id;
        if (id === undefined || id === '') {
          problems.push({ engine: 'cedar', file, line, reason: 'policy has no @id("...") annotation' });
        } else if (id in policies) {
          problems.push({ engine: 'cedar', file, line, reason: `duplicate policy @id("${id}")` });
        } else {
          policies[id] = part;
          own[id] = part;
          scopes.set(id, json.json);
          offsets.set(id, offset);
          messages.set(id, ann.reason ?? id);
          if (ann.parity !== undefined) parity.set(id, ann.parity);
        }
      }
      if (Object.keys(own).length === 0) continue;
      const v = cedar.validate({ schema, policies: { staticPolicies: own }, validationSettings: { mode: 'strict' } });
      if (v.type === 'failure') {
        problems.push(...problemsFrom(v.errors, file, text));
        continue;
      }
      for (const ve of [...v.validationErrors, ...v.validationWarnings]) {
        // Source locations are relative to the policy's own text: shift them to the file.
        const base = offsets.get(ve.policyId) ?? 0;
        const loc = ve.error.sourceLocations?.[0];
        const msg = ve.error.message;
        const reason = msg.includes(`\`${ve.policyId}\``) ? msg : `in policy @id("${ve.policyId}"): ${msg}`;
        problems.push({ engine: 'cedar', file, line: lineOf(text, base + (loc?.start ?? 0)), reason });
      }
    }
    if (problems.length > 0) throw compileError(problems);

    // Pre-parsed sets live in the WASM module's thread-local cache under an id; a fresh id per
    // load lets a reload prepare the new set while the old one keeps serving.
    const psetId = `micro-mcp-policies-${++generation}`;
    const ps = cedar.preparsePolicySet(psetId, { staticPolicies: policies });
    if (ps.type === 'failure') throw compileError(ps.errors.map((e) => ({ engine: 'cedar', file: dir, line: null, reason: e.message })));
    return new CedarEngine(psetId, messages, revision, parity, new Map(Object.entries(policies)), scopes);
  }

  /**
   * The slice for this action and tool, made on first use: the policies whose scope can match, less
   * (for tools/call) those Cedar's partial evaluation shows no call of the tool can satisfy. Keyed by
   * everything the tool's entity holds (its hints too, which a catalog refresh may change).
   */
  #slice(action: string, tool: ToolFacts): Slice {
    const key = `${action}\0${toolEntityKey(tool)}`;
    const known = this.#slices.get(key);
    if (known !== undefined) return known;
    const scoped: Record<string, string> = {};
    for (const id of sliceFor(this.#scopes, { action, tool: tool.name, namespace: tool.namespace })) scoped[id] = this.#text(id);
    // The partial evaluation (~1-2 ms per shape, once per tool) is worth it where arguments differ
    // on every call and miss the memo (tools/call); a list decision is memoised per principal.
    const partials = action === 'call_tool' ? partialEvaluations(scoped, action, toolEntityOf(tool)) : [];
    const never = partials.length === 0 ? new Set<string>() : unsatisfiable(Object.keys(scoped), partials, this.#scopes);
    const ids = Object.keys(scoped).filter((id) => !never.has(id));
    if (this.#slices.size >= SLICES_MAX) {
      const [oldKey, old] = this.#slices.entries().next().value as [string, Slice];
      this.#slices.delete(oldKey);
      for (const set of old.sets) if (set !== undefined) cedar.preparsePolicySet(set.id, { staticPolicies: '' });
    }
    const slice: Slice = {
      policies: Object.freeze(ids),
      attributes: namedAttributes(ids.map((id) => this.#json(id))),
      partials,
      sets: [],
    };
    this.#slices.set(key, slice);
    return slice;
  }

  /**
   * The pre-parsed set a decision under this context shape runs against, made on first use. For
   * tools/call each policy is its residual for the tool where that can stand in for it (slice.ts
   * standIn): the tool's facts and the action are then applied once, not on every decision, and a
   * set whose policies no longer read the tool needs no tool entity in its requests (measured on
   * fs.read: a decision ~78 -> ~62 µs). Any other policy is kept as written.
   */
  #set(slice: Slice, shape: 0 | 1): PreparedSet {
    const known = slice.sets[shape];
    if (known !== undefined) return known;
    const partial = slice.partials[shape] ?? null;
    const written: Record<string, string> = {};
    const standing: Record<string, string | PolicyJson> = {};
    const residuals: string[] = [];
    const standingJson: PolicyJson[] = [];
    let tool = false;
    for (const id of slice.policies) {
      const json = this.#json(id);
      written[id] = this.#text(id);
      const r = partial === null ? null : standIn(id, partial, json, shape);
      if (r !== null) residuals.push(id);
      standing[id] = r ?? written[id];
      standingJson.push(r ?? json);
      tool ||= readsToolEntity(r ?? json);
    }
    let set = residuals.length > 0 ? this.#prepare(standing, tool, residuals, testedMembers(standingJson)) : null;
    // A residual Cedar will not parse back keeps the policies as written.
    set ??= this.#prepare(written, true, [], testedMembers(slice.policies.map((id) => this.#json(id))));
    // Every policy parsed as part of the whole set at load; a failure here is an engine fault.
    if (set === null) throw new EngineError('ERR_ENGINE_EVALUATION', 'cedar could not prepare the policies for this tool');
    slice.sets[shape] = set;
    slice.partials[shape] = null;
    return set;
  }

  /** A policy of this set, as text and as JSON (both kept for every @id at load). */
  #text(id: string): string {
    const t = this.#texts.get(id);
    if (t === undefined) throw new EngineError('ERR_ENGINE_EVALUATION', `cedar has no policy ${id}`);
    return t;
  }

  #json(id: string): PolicyJson {
    const j = this.#scopes.get(id);
    if (j === undefined) throw new EngineError('ERR_ENGINE_EVALUATION', `cedar has no policy ${id}`);
    return j;
  }

  #prepare(
    staticPolicies: Record<string, string | PolicyJson>,
    tool: boolean,
    residuals: readonly string[],
    members: ReadonlyMap<string, ReadonlySet<string>>,
  ): PreparedSet | null {
    const id = `${this.#psetId}-slice-${++this.#sliceSeq}`;
    return cedar.preparsePolicySet(id, { staticPolicies }).type === 'success' ? { id, tool, residuals: Object.freeze(residuals), members } : null;
  }

  /**
   * How a decision on this input runs: the policies of its slice that run as residuals, whether the
   * tool's entity is sent, and the context sets sent cut to the members the policies test (sorted).
   */
  preparedFor(input: PolicyInput): { residuals: readonly string[]; toolEntity: boolean; members: Record<string, string[]> } {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', 'cedar engine is closed');
    const set = this.#set(this.#slice(input.action, input.tool), input.context.data_labels !== undefined ? 1 : 0);
    const members: Record<string, string[]> = {};
    for (const [k, v] of set.members) members[k] = [...v].sort();
    return { residuals: set.residuals, toolEntity: set.tool, members };
  }

  /** The attribute names the policies of this input's slice read, sorted (null: every attribute is sent). */
  attributesFor(input: PolicyInput): readonly string[] | null {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', 'cedar engine is closed');
    const a = this.#slice(input.action, input.tool).attributes;
    return a === null ? null : [...a].sort();
  }

  /** The ids of the policies a decision on this input is evaluated against (its slice), in file order. */
  policiesFor(input: PolicyInput): readonly string[] {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', 'cedar engine is closed');
    return this.#slice(input.action, input.tool).policies;
  }

  /**
   * Authorizes one raw Cedar request against the whole pre-parsed set (the test runner's path: its
   * requests may use any entity hierarchy, so no slice applies).
   */
  authorize(req: {
    principal: { type: string; id: string };
    action: { type: string; id: string };
    resource: { type: string; id: string };
    context: Context;
    entities: EntityJson[];
  }): CedarAnswer {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', 'cedar engine is closed');
    return this.#authorize(req, this.#psetId);
  }

  #authorize(req: ReturnType<typeof toCedarRequest>, psetId: string): CedarAnswer {
    // No schema at evaluation: the policies were validated against it (strict) at load, and the
    // request and entities are well-typed by construction (toCedarRequest). Parsing them with the
    // schema again costs more than evaluating the policies (measured here: 256 µs with the
    // schema, 172 µs without; request validation on top doubled it).
    const ans = cedar.statefulIsAuthorized({ ...req, preparsedPolicySetId: psetId });
    if (ans.type === 'failure') {
      // Cedar's messages can quote entity or context values (tool arguments): keep only codes.
      const codes = ans.errors.map((e) => e.code ?? 'request_invalid');
      throw new EngineError('ERR_ENGINE_REQUEST_INVALID', `cedar rejected the request (${codes.join(', ')})`);
    }
    return {
      decision: ans.response.decision,
      reason: [...ans.response.diagnostics.reason].sort(),
      errors: ans.response.diagnostics.errors.map((e) => e.policyId),
    };
  }

  evaluate(input: PolicyInput): EngineResult {
    if (this.#closed) throw new EngineError('ERR_ENGINE_CLOSED', 'cedar engine is closed');
    const slice = this.#slice(input.action, input.tool);
    // The context's shape, as toCedarRequest writes it: data_labels only when the call has them.
    const set = this.#set(slice, input.context.data_labels !== undefined ? 1 : 0);
    const req = toCedarRequest(input, set.tool);
    // A context set the policies only test for literal members is sent cut to those members.
    for (const [k, keep] of set.members) {
      const v = req.context[k];
      if (Array.isArray(v)) req.context[k] = v.filter((x) => typeof x === 'string' && keep.has(x));
    }
    // Each entity attribute sent costs ~3 µs in cedar-wasm; one that no policy of the slice names
    // cannot change the answer (fs.read: principal.type and call_scope are left out).
    if (slice.attributes !== null) for (const e of req.entities) e.attrs = pick(e.attrs, slice.attributes);
    // Cedar is a pure function of the request (the context carries no time or request id), and one
    // engine instance is one policy revision: answers are memoised per slice and request. Measured on
    // 2 cores: a WASM evaluation ~90 µs, a memo hit (JSON key + map lookup) ~3 µs.
    const key = `${set.id}\0${JSON.stringify(req)}`;
    const hit = this.#memo.get(key);
    if (hit) return hit;
    return this.#memo.remember(key, this.#evaluate(req, set.id));
  }

  /**
   * Against the whole pre-parsed set, not a slice: a slice is cut (and partially evaluated, ~2-10 ms)
   * for each action and tool on its first decision, and made-up warm-up tools would leave slices
   * no call uses. The WASM code a decision runs is the same.
   */
  warmUp(input: PolicyInput): void {
    this.authorize(toCedarRequest(input));
  }

  #evaluate(req: ReturnType<typeof toCedarRequest>, sliceId: string): EngineResult {
    const ans = this.#authorize(req, sliceId);
    // Cedar skips a policy that errors; a skipped forbid could turn a deny into an allow, so
    // any evaluation error fails the whole decision closed.
    if (ans.errors.length > 0) throw new EngineError('ERR_ENGINE_EVALUATION', `cedar policies failed to evaluate: ${ans.errors.join(', ')}`);
    const reasons: DecisionReason[] = ans.reason.map((id) => ({ engine: 'cedar', id, message: this.#messages.get(id) ?? id }));
    if (reasons.length === 0) {
      reasons.push(
        ans.decision === 'allow'
          ? { engine: 'cedar', id: 'allow', message: 'allowed by policy' }
          : { engine: 'cedar', id: 'default_deny', message: 'no policy grants this tool to this principal' },
      );
    }
    // The deciding policies' obligations: the permits' when allowed, the forbids' (step-up) when denied.
    const obligations: Readonly<Record<string, unknown>>[] = [];
    for (const id of ans.reason) {
      const ob = this.#obligations.get(id);
      if (ob !== undefined) obligations.push(ob);
    }
    return { allow: ans.decision === 'allow', reasons, obligations };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // There is no API to drop a cached set; replacing it with an empty one frees its memory.
    cedar.preparsePolicySet(this.#psetId, { staticPolicies: '' });
    for (const { sets } of this.#slices.values()) for (const set of sets) if (set !== undefined) cedar.preparsePolicySet(set.id, { staticPolicies: '' });
    this.#slices.clear();
  }
}
