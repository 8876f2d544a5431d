/**
 * The single choke point every tool call passes before any work: `guardCall`. The entry points plug
 * the credential verifier in with `setCredentialVerifier` (services/common/credential.ts: a jose
 * check of the per-service token the gateway mints for each call). Until then every call is refused:
 * a service that forgot to install its check fails closed, not open. `--insecure-no-credentials`
 * installs an accept-all verifier explicitly. A verifier that throws or returns false makes the
 * call fail closed with a tool error, and the handler never runs.
 */
import type { ServerContext } from '@modelcontextprotocol/server';
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import { CredentialError } from './credential.js';
import type { ServiceCredential } from './credential.js';

/**
 * Verifies the credential attached to one call: the verified credential (whose reach the tool then
 * enforces), true to accept without one (the development opt-out), false (or a throw) to refuse.
 */
export type CredentialVerifier = (ctx: ServerContext, toolName: string) => boolean | ServiceCredential | Promise<boolean | ServiceCredential>;

/** What a guarded call may do: the reach its credential narrowed it to, or null (no narrowing). */
export interface CallGrant {
  reach: CredentialReach | null;
}

/** A refused call: the message is safe to show (it never contains the credential). */
export class CallRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CallRefusedError';
  }
}

let verifier: CredentialVerifier = () => false;

/** Installs the credential verifier used by every later `guardCall` (process-wide). */
export function setCredentialVerifier(v: CredentialVerifier): void {
  verifier = v;
}

/** Checks the caller's credential for one tool call; throws CallRefusedError when it fails. */
export async function guardCall(ctx: ServerContext, toolName: string): Promise<CallGrant> {
  let ok: boolean | ServiceCredential;
  try {
    ok = await verifier(ctx, toolName);
  } catch (e) {
    // A CredentialError's message is written to be shown (it never holds the token or its claims)
    // and tells the operator which check failed; any other error stays generic (fail closed).
    if (e instanceof CredentialError) throw new CallRefusedError(`refused: ${e.message} (${e.code})`);
    ok = false;
  }
  if (ok === false) throw new CallRefusedError('refused: the call credential was not accepted');
  return { reach: ok === true ? null : ok.reach };
}
