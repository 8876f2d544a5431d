/**
 * Policy slices: the policies whose scope can match one (action, tool) pair.
 *
 * cedar-wasm's statefulIsAuthorized costs ~2.4 µs per policy in the set on every request (measured
 * on 2 cores: 100 trivial policies ~200 µs, 1,000 ~2.4 ms), whether or not a policy's scope can
 * match. A policy whose action or resource scope excludes the request is never satisfied and never
 * errs (Cedar evaluates conditions only when the scope matches), so leaving it out cannot change the
 * decision, the determining policies or the errors. Only the action and resource scopes are used:
 * the principal changes with every caller, the pair (action, tool) comes from a bounded catalog.
 * unsatisfiable() then drops what Cedar's partial evaluation proves false for every call of the tool,
 * and standIn() gives each remaining policy's residual for the tool where it can replace the policy.
 */
import { isAuthorizedPartial } from '@cedar-policy/cedar-wasm/nodejs';
import { isRecord } from '../../canonical.js';
import type { ActionConstraint, Clause, Context, EntityJson, EntityUidJson, Expr, PolicyJson, ResourceConstraint } from '@cedar-policy/cedar-wasm/nodejs';

const NS = 'MicroMcp';
const ACTION = `${NS}::Action`;
const TOOL = `${NS}::Tool`;
const SERVICE = `${NS}::Service`;

/** What a slice is cut for: the request's action id and the tool with its one parent service. */
export interface SliceTarget {
  action: string;
  tool: string;
  namespace: string;
}

function uidOf(e: EntityUidJson): { type: string; id: string } {
  return '__entity' in e ? e.__entity : e;
}

/** The tool itself or its service: the only entities a tool is `in` (request.ts sends no other parent). */
function toolIsIn(e: EntityUidJson, t: SliceTarget): boolean {
  const u = uidOf(e);
  return (u.type === TOOL && u.id === t.tool) || (u.type === SERVICE && u.id === t.namespace);
}

/**
 * False only when the action scope certainly excludes the action. Actions have no parents in the
 * request's entities, so `action in X` holds exactly when X is the action itself.
 */
export function actionMayMatch(c: ActionConstraint, action: string): boolean {
  const is = (e: EntityUidJson) => {
    const u = uidOf(e);
    return u.type === ACTION && u.id === action;
  };
  if (c.op === '==') return 'entity' in c ? is(c.entity) : true;
  if (c.op === 'in') return 'entities' in c ? c.entities.some(is) : is(c.entity);
  return true;
}

/** False only when the resource scope certainly excludes Tool::"<tool>" in Service::"<namespace>". */
export function resourceMayMatch(c: ResourceConstraint, t: SliceTarget): boolean {
  if (c.op === '==') {
    if (!('entity' in c)) return true;
    const u = uidOf(c.entity);
    return u.type === TOOL && u.id === t.tool;
  }
  if (c.op === 'in') return 'entity' in c ? toolIsIn(c.entity, t) : true;
  if (c.op === 'is') {
    if (c.entity_type !== TOOL) return false;
    const within = c.in;
    return within === undefined || !('entity' in within) || toolIsIn(within.entity, t);
  }
  return true;
}

/** The ids of the policies that may apply to the target, in the given order. */
export function sliceFor(policies: ReadonlyMap<string, PolicyJson>, t: SliceTarget): string[] {
  const ids: string[] = [];
  for (const [id, p] of policies) if (actionMayMatch(p.action, t.action) && resourceMayMatch(p.resource, t)) ids.push(id);
  return ids;
}

/** A context value nothing is known about (Cedar's partial evaluation fills it in per request). */
const unknown = (name: string) => ({ __extn: { fn: 'unknown', arg: name } });

/**
 * The contexts a request can carry (request.ts), with every value unknown: scopes, purpose and
 * resource are always present, data_labels only once the session received labelled data. A key's
 * presence is itself a fact (`context has data_labels`), so both shapes are evaluated.
 */
const CONTEXT_SHAPES: readonly Context[] = [
  { scopes: unknown('scopes'), purpose: unknown('purpose'), resource: unknown('resource') },
  { scopes: unknown('scopes'), purpose: unknown('purpose'), resource: unknown('resource'), data_labels: unknown('data_labels') },
] as Context[];

/**
 * Whether a policy names a User or Agent entity (or type) itself. The partial evaluation has no
 * principal entity, so `User::"alice" in Group::"eng"` would read as false there while it holds
 * for alice: such a policy is never pruned. (Other entities are the same in both: the request
 * sends only the principal and the tool.)
 */
function namesPrincipalEntity(p: PolicyJson | undefined): boolean {
  if (p === undefined) return true;
  const text = JSON.stringify(p.conditions);
  return text.includes(`"${NS}::User"`) || text.includes(`"${NS}::Agent"`);
}

/**
 * What evaluating a residual expression can give, for any values of its unknowns: certainly true or
 * false; some boolean; some value of any type; or possibly an error. Only the last may err.
 */
type Outcome = 'true' | 'false' | 'bool' | 'value' | 'may-err';

const isBool = (o: Outcome): boolean => o === 'true' || o === 'false' || o === 'bool';

/**
 * Cedar's `&&` (`settles` false) and `||` (`settles` true): the left operand first, the right only
 * when the left does not settle it; a non-boolean operand errs.
 */
function shortCircuit(settles: 'true' | 'false', left: Outcome, right: () => Outcome): Outcome {
  if (!isBool(left)) return 'may-err';
  if (left === settles) return settles;
  const r = right();
  if (!isBool(r)) return 'may-err';
  if (r === settles) return settles;
  // The left is the other constant (the result is the right's) or some boolean.
  return left === 'bool' ? 'bool' : r;
}

const and = (left: Outcome, right: () => Outcome): Outcome => shortCircuit('false', left, right);
const or = (left: Outcome, right: () => Outcome): Outcome => shortCircuit('true', left, right);

function not(o: Outcome): Outcome {
  if (o === 'true') return 'false';
  if (o === 'false') return 'true';
  return o === 'bool' ? 'bool' : 'may-err';
}

/**
 * The outcome of a residual, by Cedar's evaluation rules, over the few forms its partial evaluation
 * leaves behind when a tool's facts settle a condition that also reads the context: literals, the
 * unknowns standing for context values (every request carries them, so they evaluate), `==` and
 * `!=` (which never err on values), `&&`, `||` and `!`. E.g. `unknown("purpose") == "" && false`
 * is false for every purpose, while `unknown("resource").path like "/x*" && false` may err (a
 * request without a path), and Cedar reports a policy that errs. Anything else: may err.
 */
export function outcomeOf(e: Expr): Outcome {
  if ('Value' in e) return e.Value === true ? 'true' : e.Value === false ? 'false' : 'value';
  if ('unknown' in e) return Array.isArray(e.unknown) ? 'value' : 'may-err';
  const eq = operands(e, '==') ?? operands(e, '!=');
  if (eq !== undefined) return outcomeOf(eq.left) !== 'may-err' && outcomeOf(eq.right) !== 'may-err' ? 'bool' : 'may-err';
  const both = operands(e, '&&');
  if (both !== undefined) return and(outcomeOf(both.left), () => outcomeOf(both.right));
  const either = operands(e, '||');
  if (either !== undefined) return or(outcomeOf(either.left), () => outcomeOf(either.right));
  const negated: unknown = Reflect.get(e, '!');
  if (isRecord(negated) && isExpr(negated.arg)) return not(outcomeOf(negated.arg));
  return 'may-err';
}

/** An expression node is a JSON object (an operator or literal by its one key). */
const isExpr = (x: unknown): x is Expr => isRecord(x);

/** The operands of a binary operator node `{op: {left, right}}`; undefined for any other node. */
function operands(e: Expr, op: '==' | '!=' | '&&' | '||'): { left: Expr; right: Expr } | undefined {
  const x: unknown = Reflect.get(e, op);
  return isRecord(x) && isExpr(x.left) && isExpr(x.right) ? { left: x.left, right: x.right } : undefined;
}

/**
 * Whether a residual's conditions (each `when` and the negation of each `unless`, in order, joined
 * by `&&` as Cedar evaluates them) are false for every principal and context, without an error.
 */
export function certainlyFalse(conditions: readonly Clause[]): boolean {
  let o: Outcome = 'true';
  for (const c of conditions) o = and(o, () => (c.kind === 'when' ? outcomeOf(c.body) : not(outcomeOf(c.body))));
  return o === 'false';
}

/** Cedar's partial evaluation of a slice under one context shape: each policy's residual, and those that erred. */
export interface PartialEvaluation {
  residuals: Readonly<Record<string, PolicyJson>>;
  errored: ReadonlySet<string>;
}

/**
 * Cedar's own partial evaluation of the policies for every call of this action on this tool: the
 * tool entity known, the principal and the context values unknown, once per context shape (in
 * CONTEXT_SHAPES order: without data_labels, with). Null for a shape Cedar could not evaluate.
 */
export function partialEvaluations(policies: Readonly<Record<string, string>>, action: string, tool: EntityJson): Array<PartialEvaluation | null> {
  return CONTEXT_SHAPES.map((context) => {
    const ans = isAuthorizedPartial({
      principal: null,
      action: { type: ACTION, id: action },
      resource: uidOf(tool.uid),
      context,
      policies: { staticPolicies: policies },
      entities: [tool],
    });
    return ans.type === 'residuals' ? { residuals: ans.response.residuals, errored: new Set(ans.response.errored) } : null;
  });
}

/**
 * The policies of a slice that no call of this action on this tool can satisfy: under every context
 * shape, Cedar's partial evaluation (partialEvaluations) leaves their condition false, with no error
 * possible (certainlyFalse; e.g. `!(resource in Service::"fs")` for an fs tool, or
 * `context.purpose == "" && false` where the tool's hints settle the rest). A policy Cedar reports
 * erring on the tool's own facts stays: its residual reads false, but it errs on every call and the
 * whole set reports it. Each policy costs ~4 µs per decision in cedar-wasm (measured: fs.read's slice
 * of 10 policies ~100 µs, 7 ~88 µs, none ~59 µs), and leaving one out cannot change the decision,
 * the determining policies or the errors. A shape Cedar could not evaluate prunes nothing.
 */
export function unsatisfiable(ids: readonly string[], partials: ReadonlyArray<PartialEvaluation | null>, json: ReadonlyMap<string, PolicyJson>): Set<string> {
  let candidates = ids.filter((id) => !namesPrincipalEntity(json.get(id)));
  for (const partial of partials) {
    if (partial === null) return new Set();
    candidates = candidates.filter((id) => {
      const residual = partial.residuals[id];
      return residual !== undefined && !partial.errored.has(id) && certainlyFalse(residual.conditions);
    });
  }
  return new Set(candidates);
}

/** The context keys of each shape, in CONTEXT_SHAPES order: what an unknown of that name stands for. */
const SHAPE_KEYS: ReadonlyArray<ReadonlySet<string>> = CONTEXT_SHAPES.map((c) => new Set(Object.keys(c)));

/**
 * The residual that can stand in for a policy on every call of the tool under one context shape,
 * or null. The residual is the policy with the tool's facts and the action already applied, which
 * is what evaluating the policy does first on each such call; its unknowns become what the request
 * carries (`unknown("principal")` the principal, `unknown("purpose")` `context.purpose`). Null where
 * that could change an answer: a policy that erred on the tool's facts; one that names a User or
 * Agent entity (the partial request has no principal entity, see namesPrincipalEntity); a scope
 * left in the residual; an unknown the request does not carry; and a Long beyond 2^53, which the
 * residual brings over as a JS number (9223372036854775807 arrives as 9223372036854776000).
 */
export function standIn(id: string, partial: PartialEvaluation, json: PolicyJson | undefined, shape: number): PolicyJson | null {
  const residual = partial.residuals[id];
  if (residual === undefined || partial.errored.has(id) || namesPrincipalEntity(json)) return null;
  if (residual.principal.op !== 'All' || residual.action.op !== 'All' || residual.resource.op !== 'All') return null;
  const keys = SHAPE_KEYS[shape];
  if (keys === undefined) return null;
  let ok = true;
  const rewrite = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (typeof v === 'number' && !Number.isSafeInteger(v)) ok = false;
    if (!isRecord(v)) return v;
    if ('Slot' in v) ok = false;
    if ('unknown' in v) {
      const name: unknown = Array.isArray(v.unknown) && v.unknown.length === 1 && isRecord(v.unknown[0]) ? v.unknown[0].Value : undefined;
      if (name === 'principal') return { Var: 'principal' };
      if (typeof name === 'string' && keys.has(name)) return { '.': { left: { Var: 'context' }, attr: name } };
      ok = false;
      return v;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = rewrite(x);
    return out;
  };
  const conditions = rewrite(residual.conditions);
  return ok && isClauseList(conditions) ? { ...residual, conditions } : null;
}

/** A policy's conditions as its JSON writes them: `when` and `unless` clauses, each with a body. */
const isClauseList = (x: unknown): x is Clause[] =>
  Array.isArray(x) && x.every((c) => isRecord(c) && (c.kind === 'when' || c.kind === 'unless') && isRecord(c.body));

/**
 * Whether a policy (as JSON) can read the tool's entity: it names the `resource` variable, or a
 * Tool or Service entity (whose attributes or hierarchy only the tool's entity carries). A set
 * none of whose policies can needs no tool entity in its requests (~8 µs less per decision).
 */
export function readsToolEntity(policy: PolicyJson): boolean {
  const text = JSON.stringify(policy.conditions);
  return policy.resource.op !== 'All' || text.includes('"Var":"resource"') || text.includes(`"${TOOL}"`) || text.includes(`"${SERVICE}"`);
}

/** The context keys that hold sets of strings (request.ts): scopes, and data_labels when present. */
const SET_KEYS: readonly string[] = ['scopes', 'data_labels'];

/** `context.<key>` for one of SET_KEYS, as a policy's JSON writes it; else undefined. */
function contextSet(e: unknown): string | undefined {
  if (!isRecord(e)) return undefined;
  const dot: unknown = e['.'];
  if (!isRecord(dot) || !isRecord(dot.left) || dot.left.Var !== 'context' || typeof dot.attr !== 'string') return undefined;
  return SET_KEYS.includes(dot.attr) ? dot.attr : undefined;
}

/** The strings of a literal operand: a string (contains), or a set of strings (containsAny/All); else null. */
function literalStrings(op: string, e: unknown): string[] | null {
  if (!isRecord(e)) return null;
  if (op === 'contains') return typeof e.Value === 'string' ? [e.Value] : null;
  const items: unknown = Array.isArray(e.Set) ? e.Set.map((x: unknown) => (isRecord(x) ? x.Value : undefined)) : e.Value;
  return Array.isArray(items) && items.every((x): x is string => typeof x === 'string') ? items : null;
}

/**
 * For each context set (scopes, data_labels), the strings the policies test it for, when that is all
 * they do with it: `.contains("x")`, `.containsAny(["x", ...])`, `.containsAll(["x", ...])` with
 * literal strings (as residuals write a tool's call_scope). Every such test asks only about members
 * among those strings, so a request may carry the set cut to them: a token's other scopes only cost
 * microseconds in cedar-wasm (~1.3 µs each, measured). A set read any other way (`==`, `isEmpty()`,
 * a non-literal operand, `context` itself) is absent from the result and is sent whole.
 */
export function testedMembers(policies: Iterable<PolicyJson>): Map<string, Set<string>> {
  const tested = new Map<string, Set<string>>(SET_KEYS.map((k) => [k, new Set<string>()]));
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (!isRecord(v)) return;
    if (v.Var === 'context') {
      tested.clear(); // the whole context, e.g. compared or passed on: nothing may be cut
      return;
    }
    const key = contextSet(v);
    if (key !== undefined) {
      tested.delete(key); // read outside a literal membership test
      return;
    }
    for (const [k, x] of Object.entries(v)) {
      if ((k === 'contains' || k === 'containsAny' || k === 'containsAll') && isRecord(x)) {
        const set = contextSet(x.left);
        const strings = set === undefined ? null : literalStrings(k, x.right);
        if (set !== undefined && strings !== null) {
          for (const s of strings) tested.get(set)?.add(s);
          walk(x.right);
          continue;
        }
      }
      // `context.<attr>` and `context has <attr>` name one part of the context, not all of it.
      if ((k === '.' || k === 'has') && isRecord(x) && isRecord(x.left) && x.left.Var === 'context') continue;
      walk(x);
    }
  };
  for (const p of policies) walk(p.conditions);
  return tested;
}

/**
 * The attribute names the policies' conditions read (`.` and `has`, at any depth), or null when a
 * policy reads tags (then every attribute is kept). An entity attribute no policy of a slice names
 * cannot change its answer: Cedar compares entities by their uid and reads attributes only by name.
 */
export function namedAttributes(policies: Iterable<PolicyJson>): Set<string> | null {
  const names = new Set<string>();
  let tags = false;
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    for (const [k, x] of Object.entries(v)) {
      if ((k === '.' || k === 'has') && typeof x === 'object' && x !== null && typeof (x as { attr?: unknown }).attr === 'string') {
        names.add((x as { attr: string }).attr);
      }
      if (k === 'getTag' || k === 'hasTag') tags = true;
      walk(x);
    }
  };
  for (const p of policies) walk(p.conditions);
  return tags ? null : names;
}
