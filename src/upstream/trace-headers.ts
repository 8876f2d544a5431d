/**
 * W3C trace context for a remote service: the gateway puts the call's `traceparent` (and
 * `tracestate`) in the forwarded request's `_meta` (the MCP convention, which is all a stdio service
 * can receive); a remote service also gets them as HTTP headers, where HTTP tracing expects them.
 */
import type { FetchLike } from './connection.js';
import { isRecord } from '../canonical.js';

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** fetch that copies `params._meta.traceparent`/`tracestate` of a single JSON-RPC request into headers. */
export function traceHeaders(base: FetchLike): FetchLike {
  return async (input, init) => {
    if (!init || typeof init.body !== 'string' || !init.body.includes('"traceparent"')) return base(input, init);
    const meta = metaOf(init.body);
    const tp = meta?.traceparent;
    if (typeof tp !== 'string' || !TRACEPARENT.test(tp)) return base(input, init);
    const headers = new Headers(init.headers);
    headers.set('traceparent', tp);
    if (typeof meta?.tracestate === 'string' && meta.tracestate.length <= 512) headers.set('tracestate', meta.tracestate);
    return base(input, { ...init, headers });
  };
}

function metaOf(body: string): Record<string, unknown> | undefined {
  let msg: unknown;
  try {
    msg = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!isRecord(msg) || !isRecord(msg.params) || !isRecord(msg.params._meta)) return undefined;
  return msg.params._meta;
}
