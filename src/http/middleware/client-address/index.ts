export { clientAddress } from './client-address.js';
export type { ClientAddressOptions } from './client-address.js';
