/**
 * Consent bound to the exact call (issue #14): a decision with the `consent` obligation is forwarded
 * only once the agent's user approved this principal calling this tool with these arguments under
 * this policy revision. The question goes to the user through MCP: an `input_required` round for
 * 2026-07-28 agents, `elicitation/create` for 2025 agents (the SDK's legacy shim turns the same
 * round into one). An approval becomes a grant (shared state, so every replica honours it) reused
 * only for that exact call shape until it expires; every other answer is a distinct denial.
 */
import { inputRequired, specTypeSchemas } from '@modelcontextprotocol/server';
import type { InputRequiredResult } from '@modelcontextprotocol/server';
import { digest, sha256 } from '../canonical.js';
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { ConsentGrants } from '../state/state.js';

/** The requestState payload of a consent question, signed and bound to the principal by the StatePort. */
export interface ConsentState {
  k: 'consent';
  tool: string;
  /** The argument digest the user was shown. */
  args: string;
  /** The policy revision the question was asked under. */
  rev: string;
  /** Until when (ms since epoch, the pipeline's clock) an answer is accepted. */
  exp: number;
}

export function isConsentState(s: unknown): s is ConsentState {
  if (typeof s !== 'object' || s === null) return false;
  const o = s as Record<string, unknown>;
  return o.k === 'consent' && typeof o.tool === 'string' && typeof o.args === 'string' && typeof o.rev === 'string' && typeof o.exp === 'number';
}

/** How consent went, for the outcome record (never the arguments). */
export type ConsentResult = 'asked' | 'granted' | 'reused' | 'declined' | 'cancelled' | 'expired' | 'mismatch' | 'unavailable';

/** The key under the input request the gateway adds (distinct from any service's own `gw<n>` keys). */
export const CONSENT_KEY = 'micro-mcp/consent';

const APPROVE_SCHEMA = {
  type: 'object' as const,
  properties: { approve: { type: 'boolean' as const, title: 'Allow this call', description: 'Allow this call, with exactly these arguments' } },
  required: ['approve'],
};

export interface ConsentOptions {
  grants: ConsentGrants;
  clock: Pick<Clock, 'now'>;
  /** How long the user has to answer. */
  askTtlMs: number;
  /** How long an approval is reused for the same call shape. */
  grantTtlMs: number;
}

/** What one consent check needs to know about the call. */
export interface ConsentCall {
  principal: string;
  tool: string;
  args: Record<string, unknown>;
  revision: string;
  purpose: string | null;
  /** The arguments as the user sees them (secrets already removed), one line per argument. */
  summary: string;
  /** The agent declared the elicitation capability. */
  canAsk: boolean;
  /** The consent question's state, when this request is the agent's answer. */
  state?: ConsentState;
  /** The agent's answer, raw (validated here). */
  answer?: unknown;
}

export type ConsentVerdict =
  | { kind: 'granted'; result: 'granted' | 'reused'; expiresAt: number }
  | { kind: 'ask'; state: ConsentState; request: (requestState: string) => InputRequiredResult }
  | { kind: 'denied'; result: Exclude<ConsentResult, 'asked' | 'granted' | 'reused'>; error: GatewayError };

/** A grant's key: principal, tool, argument digest and policy revision, hashed (no argument reaches the store). */
export function grantKey(principal: string, tool: string, argsDigest: string, revision: string): string {
  return sha256(JSON.stringify([principal, tool, argsDigest, revision]));
}

/** Decides consent for one call; stateless apart from the grant store. */
export class ConsentGate {
  constructor(private readonly o: ConsentOptions) {}

  async check(c: ConsentCall): Promise<ConsentVerdict> {
    const now = this.o.clock.now();
    const argsDigest = digest(c.args);
    const key = grantKey(c.principal, c.tool, argsDigest, c.revision);
    const deny = (result: Exclude<ConsentResult, 'asked' | 'granted' | 'reused'>, code: ConstructorParameters<typeof GatewayError>[0], message: string) =>
      ({ kind: 'denied', result, error: new GatewayError(code, message, { consent: result }) }) as const;

    if (c.state !== undefined) {
      // The agent's answer to our question: it holds only for the call the user was shown.
      if (c.state.tool !== c.tool || c.state.args !== argsDigest)
        return deny('mismatch', 'ERR_CONSENT_MISMATCH', 'the arguments changed after the user was asked; the consent does not cover this call');
      if (c.state.rev !== c.revision) return deny('mismatch', 'ERR_CONSENT_MISMATCH', 'the policy changed after the user was asked; ask again');
      if (now > c.state.exp) return deny('expired', 'ERR_CONSENT_EXPIRED', 'the consent request expired before the user answered');
      const parsed = specTypeSchemas.ElicitResult['~standard'].validate(c.answer);
      const answer = 'value' in parsed && parsed.issues === undefined ? parsed.value : undefined;
      if (answer === undefined) return deny('cancelled', 'ERR_CONSENT_CANCELLED', 'the agent gave no valid answer to the consent request');
      if (answer.action === 'cancel') return deny('cancelled', 'ERR_CONSENT_CANCELLED', 'the user cancelled the consent request');
      if (answer.action !== 'accept' || answer.content?.approve !== true) return deny('declined', 'ERR_CONSENT_DECLINED', 'the user declined this call');
      const expiresAt = now + this.o.grantTtlMs;
      await this.o.grants.grant(key, expiresAt);
      return { kind: 'granted', result: 'granted', expiresAt };
    }

    const live = await this.o.grants.find(key, now);
    if (live !== undefined) return { kind: 'granted', result: 'reused', expiresAt: live };
    if (!c.canAsk)
      return deny(
        'unavailable',
        'ERR_CONSENT_REQUIRED',
        "this call needs the user's consent, and the agent cannot ask its user (it did not declare the elicitation capability)",
      );
    const state: ConsentState = { k: 'consent', tool: c.tool, args: argsDigest, rev: c.revision, exp: now + this.o.askTtlMs };
    const message = [
      `Allow ${c.tool}?`,
      c.purpose !== null ? `Purpose: ${c.purpose}` : 'Purpose: none declared',
      'Arguments:',
      c.summary,
      `The approval holds for this exact call for ${Math.round(this.o.grantTtlMs / 60_000)} min.`,
    ].join('\n');
    return {
      kind: 'ask',
      state,
      request: (requestState) =>
        inputRequired({ inputRequests: { [CONSENT_KEY]: inputRequired.elicit({ message, requestedSchema: APPROVE_SCHEMA }) }, requestState }),
    };
  }
}

/** A readable summary of arguments: one `name: value` line each, values cut to 120 characters, at most 20 lines. */
export function summarize(args: unknown): string {
  if (typeof args !== 'object' || args === null) return '  (none)';
  const entries = Object.entries(args as Record<string, unknown>);
  if (entries.length === 0) return '  (none)';
  const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}...` : s);
  const lines = entries.slice(0, 20).map(([k, v]) => `  ${cut(k, 40)}: ${cut(typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v)), 120)}`);
  if (entries.length > 20) lines.push(`  ... and ${entries.length - 20} more`);
  return lines.join('\n');
}
