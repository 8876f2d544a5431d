export { bodyCap } from './body-cap.js';
export type { BodyCapOptions } from './body-cap.js';
