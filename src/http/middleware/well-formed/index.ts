export { isWellFormedJson } from '../../../canonical.js';
export { wellFormed } from './well-formed.js';
