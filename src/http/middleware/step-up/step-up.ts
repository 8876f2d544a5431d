import type { MiddlewareHandler } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import { GatewayError } from '../../../errors.js';
import type { Principal } from '../../../types.js';
import { clientIp, type GatewayEnv } from '../../context.js';
import { challengeResponse, type EdgeAuthenticator } from '../authenticate/authenticate.js';

export interface StepUpOptions {
  auth: EdgeAuthenticator;
  /** The scopes that would let this principal see the tool (the list-phase decision), or undefined. */
  scopesToLift: (principal: Principal, tool: string, requestId: string) => string[] | undefined;
  onRefused: (e: GatewayError, facts: RefusalFacts) => Promise<void>;
  /** The canonical <service>.<tool> of an exposed tool name (services.<name>.expose), for the record. */
  canonicalTool?: (tool: string) => string | undefined;
}

/**
 * Step-up (MCP authorization spec): a tools/call the list phase hides from this principal only for
 * want of scope is answered HTTP 403 with error="insufficient_scope" and the scopes that would lift
 * it, so the client can ask its authorization server for them. The answer comes from the same
 * (cached) list-phase decision tools/list shows, not from a second decision of the call; a call
 * that passes is decided in full, and audited, by the pipeline.
 */
export const stepUp = (opts: StepUpOptions): MiddlewareHandler<GatewayEnv> =>
  async function stepUp(c, next) {
    const tool = toolCalled(c.get('body'));
    if (tool !== undefined) {
      const principal = c.get('principal');
      const scopes = opts.scopesToLift(principal, tool, c.get('requestId'));
      if (scopes !== undefined) {
        const e = new GatewayError('ERR_INSUFFICIENT_SCOPE', 'this call needs more scope', { required_scopes: scopes });
        const canonical = opts.canonicalTool?.(tool) ?? tool;
        const names = canonical === tool ? { tool } : { tool: canonical, exposedName: tool };
        await opts.onRefused(e, { requestId: c.get('requestId'), clientIp: clientIp(c), principal, method: 'tools/call', ...names });
        return challengeResponse(opts.auth, e);
      }
    }
    await next();
    return undefined;
  };

/** The tool name of a single (non-batch) tools/call request, else undefined. */
function toolCalled(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  if (!('method' in body) || body.method !== 'tools/call' || !('params' in body)) return undefined;
  const params = body.params;
  return typeof params === 'object' && params !== null && 'name' in params && typeof params.name === 'string' ? params.name : undefined;
}
