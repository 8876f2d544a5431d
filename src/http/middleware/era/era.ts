import { isLegacyRequest } from '@modelcontextprotocol/server';
import type { MiddlewareHandler } from 'hono';

/**
 * Which protocol era a request speaks, classified by the SDK's own rule (the 2026-07-28 `_meta`
 * envelope and headers, else a 2025 revision): `c.var.era`. The MCP face routes on it.
 */
export const era = (opts: { maxBodyBytes: number }): MiddlewareHandler =>
  async function era(c, next) {
    const legacy = await isLegacyRequest(c.req.raw, c.var.body, { maxRequestBodySize: opts.maxBodyBytes });
    c.set('era', legacy ? 'legacy' : 'modern');
    await next();
  };
