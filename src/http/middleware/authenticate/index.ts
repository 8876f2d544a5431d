export { authenticate } from './authenticate.js';
export type { AuthenticateOptions, EdgeAuthenticator } from './authenticate.js';
