/** The audit trail hashes and digests with the project's one canonical JSON (src/canonical.ts). */
export { canonicalize, canonicalJson, digest, sha256 } from '../canonical.js';
