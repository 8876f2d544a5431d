export { stepUp } from './step-up.js';
export type { StepUpOptions } from './step-up.js';
