/**
 * The one table from MCP method to policy action and phase. Both engines read the action from it
 * (Rego as `input.action`, Cedar as the request's action), so a method cannot mean one thing to
 * Rego and another to Cedar. A method that is not in the table is never evaluated: the combiner
 * refuses it with reason `unknown_method` (policy-set.ts).
 */
import type { PolicyPhase } from '../types.js';

export const POLICY_METHODS = Object.freeze({
  'tools/list': { action: 'list_tools', phase: 'list' },
  'tools/call': { action: 'call_tool', phase: 'call' },
  'prompts/list': { action: 'list_prompts', phase: 'list' },
  'prompts/get': { action: 'get_prompt', phase: 'call' },
  'resources/list': { action: 'list_resources', phase: 'list' },
  'resources/templates/list': { action: 'list_resource_templates', phase: 'list' },
  'resources/read': { action: 'read_resource', phase: 'call' },
  'resources/subscribe': { action: 'subscribe_resource', phase: 'call' },
  'completion/complete': { action: 'complete', phase: 'call' },
} as const satisfies Record<string, { action: string; phase: PolicyPhase }>);

export type PolicyMethod = keyof typeof POLICY_METHODS;
export type PolicyAction = (typeof POLICY_METHODS)[PolicyMethod]['action'];

/** True for a method the gateway decides by policy. */
export function isPolicyMethod(method: string): method is PolicyMethod {
  return Object.hasOwn(POLICY_METHODS, method);
}

/** The list-phase method that shows the entries a call method uses ("tools/call" -> "tools/list"). */
export const LIST_METHOD_OF: Readonly<Record<string, PolicyMethod>> = Object.freeze({
  'tools/call': 'tools/list',
  'prompts/get': 'prompts/list',
  'resources/read': 'resources/list',
});
