/**
 * The Cedar request derived from a PolicyInput, as the contract says (ARCHITECTURE.md "The
 * policy contract", policies/cedar/schema.cedarschema).
 */
import type { CedarValueJson, Context, EntityJson, EntityUidJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { PolicyInput, ToolFacts } from '../../types.js';

export interface CedarRequest {
  principal: { type: string; id: string };
  action: { type: string; id: string };
  resource: { type: string; id: string };
  context: Context;
  entities: EntityJson[];
}

const NS = 'MicroMcp';
const HINTS = ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint'] as const;

const uid = (type: string, id: string): { type: string; id: string } => ({ type: `${NS}::${type}`, id });

/**
 * principal: User (type user) or Agent (types agent and service) with parents Group::"<group>";
 * resource: Tool::"<name>" in Service::"<namespace>" with call_scope and the boolean hints;
 * context: {scopes, purpose ("" when none), resource: the non-null facts of the right type}.
 * Only the principal and the tool are sent as entities: Group and Service have no attributes,
 * and every entity or attribute sent costs microseconds per decision (measured: 5 entities with
 * 10 attributes ~240 µs, 2 entities with 3 attributes ~70 µs, on 2 cores). `withTool` false leaves
 * the tool's entity out (its uid stays the resource): for a set of policies none of which can read
 * it (engine.ts, slice.ts readsToolEntity).
 */
export function toCedarRequest(input: PolicyInput, withTool = true): CedarRequest {
  const p = input.principal;
  const principal = p.type === 'user' ? uid('User', p.id) : uid('Agent', p.id);
  const groups = [...new Set(p.groups)].map((g) => uid('Group', g));

  const entities: EntityJson[] = [{ uid: principal, attrs: { type: p.type, purposes: [...new Set(p.purposes)] }, parents: groups as EntityUidJson[] }];
  if (withTool) entities.push(toolEntityOf(input.tool));

  return {
    principal,
    // The action comes from the one method table (src/policy/methods.ts), as Rego's input.action does.
    action: uid('Action', input.action),
    resource: uid('Tool', input.tool.name),
    context: {
      scopes: [...new Set(input.scopes)],
      purpose: input.purpose ?? '',
      resource: resourceFacts(input.resource),
      ...(input.context.data_labels !== undefined ? { data_labels: [...input.context.data_labels] } : {}),
    },
    entities,
  };
}

/**
 * The resource entity: Tool::"<name>" in Service::"<namespace>", with call_scope and the boolean
 * hints. It depends on the tool alone, so a slice cut for it (./slice.ts) fits every call of the tool.
 */
export function toolEntityOf(t: ToolFacts): EntityJson {
  const attrs: Record<string, CedarValueJson> = { call_scope: `${t.namespace}:call` };
  const ann = t.annotations ?? {};
  // Non-boolean hints are dropped: policies then apply the spec's (riskiest) default, exactly
  // as the Rego policies do when a hint is not the boolean they test for.
  for (const h of HINTS) if (typeof ann[h] === 'boolean') attrs[h] = ann[h] as boolean;
  return { uid: uid('Tool', t.name), attrs, parents: [uid('Service', t.namespace)] };
}

/** What of a tool its Cedar entity holds, as a short key: name, namespace and each hint (t, f or -). */
export function toolEntityKey(t: ToolFacts): string {
  const ann = t.annotations ?? {};
  let hints = '';
  for (const h of HINTS) hints += ann[h] === true ? 't' : ann[h] === false ? 'f' : '-';
  return `${t.name}\0${t.namespace}\0${hints}`;
}

/**
 * Every fact Cedar can hold: strings, booleans and integers (Long). Cedar has no null: unknown or
 * invalid facts (and non-integer numbers) are left out, and policies test them with `has`.
 */
function resourceFacts(r: Record<string, unknown>): Record<string, CedarValueJson> {
  const out: Record<string, CedarValueJson> = {};
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === 'string' || typeof v === 'boolean') out[k] = v;
    else if (typeof v === 'number' && Number.isSafeInteger(v)) out[k] = v;
  }
  return out;
}
