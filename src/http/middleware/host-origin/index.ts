export { hostOrigin } from './host-origin.js';
export type { HostOriginOptions } from './host-origin.js';
