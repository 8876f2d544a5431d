export { era } from './era.js';
