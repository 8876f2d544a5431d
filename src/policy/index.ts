/** The policy module's public API (see the module's doc comments and schemas/). */
export { buildPolicyInput, canonicalFsPath, httpResource, resourceExtractor, resourceExtractors } from './input.js';
export type { BuildPolicyInputParams, HttpResource, ResourceExtractor, ResourceSpec } from './input.js';
export { loadPolicies, PolicySet } from './policy-set.js';
export type { LoadPoliciesHooks } from './policy-set.js';
export type { EngineName, EngineResult, PolicyConfig, PolicyEngine, PolicyLogger } from './types.js';
export { policyBuild, policyCheck, policyExplain, policyTest } from './cli.js';
export type { ExplainOptions, Writer } from './cli.js';
export { toolFacts } from './tools.js';
