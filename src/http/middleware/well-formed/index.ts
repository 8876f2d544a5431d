export { isWellFormedJson, wellFormed } from './well-formed.js';
