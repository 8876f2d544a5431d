export { requestId } from './request-id.js';
