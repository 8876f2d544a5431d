/**
 * Event records for what the gateway refuses or changes outside a call's decision: an
 * authentication failure, a step-up refusal, a request over an edge limit, a policy reload. Built
 * here, like every audit record; callers hand over the facts they know. A refusal is written before
 * the refusing answer goes out, so the record exists whatever the caller does next; a write that fails
 * is logged (the answer stays a refusal either way).
 */
import type { GatewayError } from '../errors.js';
import type { Logger, Principal } from '../types.js';
import type { EventInput } from './records.js';

/** What is known about a refused request (the principal only when the token itself was valid). */
export interface RefusalFacts {
  requestId: string;
  clientIp: string | null;
  principal?: Principal;
  method?: string;
  tool?: string;
}

export class Refusals {
  constructor(
    private readonly audit: { event(rec: EventInput): Promise<unknown> },
    private readonly log: Logger,
  ) {}

  /** A missing, invalid or expired token, or one that lacks the scope a call needs (step-up). */
  authFailure(e: GatewayError, f: RefusalFacts): Promise<void> {
    return this.write({
      type: 'auth_failure',
      request_id: f.requestId,
      requested_by: f.clientIp,
      error: { code: e.code, message: e.message },
      ...(f.principal ? { principal: { id: f.principal.id, type: f.principal.type, issuer: f.principal.issuer }, client: f.principal.client } : {}),
      ...(f.method ? { method: f.method } : {}),
      ...(f.tool ? { tool: f.tool } : {}),
    });
  }

  /** A request refused at the edge by a size or rate limit, before any decision. */
  limitRefused(limit: string, f: RefusalFacts): Promise<void> {
    return this.write({ type: 'limit_refused', request_id: f.requestId, requested_by: f.clientIp, details: { limit } });
  }

  /** A policy set swapped in by hot reload. */
  policyReloaded(info: { revision: string; previous: string }): Promise<void> {
    return this.write({ type: 'policy_reload', details: info });
  }

  /** A policy edit that did not compile or validate; the last good set keeps running. */
  policyReloadRejected(e: GatewayError): Promise<void> {
    // Each problem with its engine, file, line and reason (ERR_POLICY_COMPILE carries them).
    const problems = Array.isArray(e.data?.problems) ? e.data.problems : undefined;
    return this.write({ type: 'policy_reload', error: { code: e.code, message: e.message }, details: { ok: false, ...(problems ? { problems } : {}) } });
  }

  private async write(rec: EventInput): Promise<void> {
    try {
      await this.audit.event(rec);
    } catch (err) {
      this.log.error({ err: (err as Error).message, type: rec.type, ...(rec.request_id ? { request_id: rec.request_id } : {}) }, 'audit event write failed');
    }
  }
}
