import type { MiddlewareHandler } from 'hono';
import { isWellFormedJson } from '../../../canonical.js';
import type { RefusalFacts } from '../../../audit/refusals.js';
import { clientIp, type GatewayEnv } from '../../context.js';

/**
 * Refuses, before anything decides or records it, a JSON-RPC message whose method, params (tool
 * names, arguments, `_meta`) or result holds a string that is not well-formed Unicode: JSON-RPC error
 * -32602 (HTTP 400) naming the rule, never the value. Otherwise such a string would reach the
 * policy engines and fail them (an engine error) instead of being refused as the bad input it is.
 */
export const wellFormed = (opts: { onRefused?: (facts: RefusalFacts) => Promise<void> } = {}): MiddlewareHandler<GatewayEnv> =>
  async function wellFormed(c, next) {
    const body = c.get('body');
    const messages: unknown[] = Array.isArray(body) ? body : body === undefined ? [] : [body];
    for (const m of messages) {
      if (isWellFormedJson(m)) continue;
      const id = typeof m === 'object' && m !== null && 'id' in m && (typeof m.id === 'string' || typeof m.id === 'number') ? m.id : null;
      const method = typeof m === 'object' && m !== null && 'method' in m && typeof m.method === 'string' && isWellFormedJson(m.method) ? m.method : undefined;
      await opts.onRefused?.({ requestId: c.get('requestId'), clientIp: clientIp(c), principal: c.get('principal'), ...(method ? { method } : {}) });
      return c.json(
        {
          jsonrpc: '2.0',
          error: { code: -32602, message: 'Invalid params: names, arguments and _meta values must be well-formed Unicode (no lone surrogates)' },
          id: Array.isArray(body) ? null : id,
        },
        400,
      );
    }
    await next();
    return undefined;
  };
