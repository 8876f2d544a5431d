/**
 * The reach a call's credential narrows the fs service to: the canonical virtual roots the policy
 * decision permitted (the principal's readable roots). Checked on the canonical path before any disk
 * access, on top of the configured roots; a call whose credential carries no reach keeps the
 * service's own configuration.
 */
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import { ToolError } from '../common/tool.js';

/** Throws unless `canonical` is one of the permitted roots or below one. */
export function checkReach(canonical: string, reach: CredentialReach | null): void {
  const roots = reach?.roots;
  if (roots === undefined) return;
  const inside = roots.some((root) => root === '/' || canonical === root || canonical.startsWith(`${root}/`));
  if (!inside) throw new ToolError('path_not_in_reach', "path refused: outside this call's authorised roots");
}
