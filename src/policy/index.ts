/** The policy module's public API (see the module's doc comments and schemas/). */
export {
  buildPolicyInput,
  canonicalFsPath,
  decisionReach,
  declaredFactNames,
  httpResource,
  isWellFormedJson,
  resourceExtractor,
  resourceExtractors,
} from './input.js';
export { isPolicyMethod, POLICY_METHODS } from './methods.js';
export type { PolicyAction, PolicyMethod } from './methods.js';
export type { BuildPolicyInputParams, HttpResource, ResourceExtractor, ResourceSpec } from './input.js';
export { loadPolicies, PolicySet } from './policy-set.js';
export type { LoadPoliciesHooks } from './policy-set.js';
export { EngineError } from './types.js';
export type { EngineErrorCode, EngineName, EngineResult, PolicyConfig, PolicyEngine, PolicyLogger } from './types.js';
export { policyBuild, policyCheck, policyExplain, policyParity, policyReplay, policyTest } from './cli.js';
export type { ExplainOptions, RecordedDecision, Writer } from './cli.js';
export { toolFacts } from './tools.js';
