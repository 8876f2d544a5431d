/**
 * The single choke point every tool call passes before any work: `guardCall`. Today it accepts every
 * call; the identity work plugs a credential verifier in with `setCredentialVerifier` (for example a
 * jose check of the per-service token the gateway mints for each call). A verifier that throws or
 * returns false makes the call fail closed with a tool error, and the handler never runs.
 */
import type { ServerContext } from '@modelcontextprotocol/server';

/** Verifies the credential attached to one call. Return false (or throw) to refuse the call. */
export type CredentialVerifier = (ctx: ServerContext, toolName: string) => boolean | Promise<boolean>;

/** A refused call: the message is safe to show (it never contains the credential). */
export class CallRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CallRefusedError';
  }
}

let verifier: CredentialVerifier = () => true;

/** Installs the credential verifier used by every later `guardCall` (process-wide). */
export function setCredentialVerifier(v: CredentialVerifier): void {
  verifier = v;
}

/** Checks the caller's credential for one tool call; throws CallRefusedError when it fails. */
export async function guardCall(ctx: ServerContext, toolName: string): Promise<void> {
  let ok: boolean;
  try {
    ok = await verifier(ctx, toolName);
  } catch {
    ok = false; // an erroring verifier denies (fail closed)
  }
  if (!ok) throw new CallRefusedError('refused: the call credential was not accepted');
}
