import { isLegacyRequest, PROTOCOL_VERSION_META_KEY } from '@modelcontextprotocol/server';
import type { MiddlewareHandler } from 'hono';
import type { GatewayEnv } from '../../context.js';
import { isRecord } from '../../../canonical.js';

/**
 * Which protocol era a request speaks, classified by the SDK's own rule (the 2026-07-28 `_meta`
 * envelope and headers, else a 2025 revision): `c.get('era')`. The MCP face routes on it.
 */
export const era = (opts: { maxBodyBytes: number }): MiddlewareHandler<GatewayEnv> =>
  async function era(c, next) {
    const body = c.get('body');
    const legacy = c.req.method === 'POST' && claimsEnvelope(body) ? false : await isLegacyRequest(c.req.raw, body, { maxRequestBodySize: opts.maxBodyBytes });
    c.set('era', legacy ? 'legacy' : 'modern');
    await next();
  };

/**
 * True for a POSTed body that the SDK's classifier can never call legacy: one JSON-RPC message (not
 * a batch) other than `initialize`, with neither a `result` nor an `error` member (so not a posted
 * response), whose `params._meta` carries the 2026-07-28 envelope claim. The classifier answers
 * such a body "modern" (a request or a notification) or rejects it on the modern path (an invalid
 * envelope, headers that contradict the body, not a JSON-RPC message): in every case the modern
 * handler serves it, and that handler classifies it in full. Without this check every 2026-07-28
 * request was classified twice, its envelope validated by zod each time (~3% of the gateway's CPU
 * at 16 agents). Everything else (initialize, 2025 traffic, batches, GET and DELETE) is asked of
 * the SDK's isLegacyRequest; era.test.ts checks that the two never disagree.
 */
export function claimsEnvelope(body: unknown): boolean {
  if (!isRecord(body) || body.method === 'initialize' || 'result' in body || 'error' in body) return false;
  const params = body.params;
  if (!isRecord(params)) return false;
  const meta = params._meta;
  return isRecord(meta) && PROTOCOL_VERSION_META_KEY in meta;
}
