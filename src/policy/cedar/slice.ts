/**
 * Policy slices: the policies whose scope can match one (action, tool) pair.
 *
 * cedar-wasm's statefulIsAuthorized costs ~2.4 µs per policy in the set on every request (measured
 * on 2 cores: 100 trivial policies ~200 µs, 1,000 ~2.4 ms), whether or not a policy's scope can
 * match. A policy whose action or resource scope excludes the request is never satisfied and never
 * errs (Cedar evaluates conditions only when the scope matches), so leaving it out cannot change the
 * decision, the determining policies or the errors. Only the action and resource scopes are used:
 * the principal changes with every caller, the pair (action, tool) comes from a bounded catalog.
 */
import type { ActionConstraint, EntityUidJson, PolicyJson, ResourceConstraint } from '@cedar-policy/cedar-wasm/nodejs';

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
