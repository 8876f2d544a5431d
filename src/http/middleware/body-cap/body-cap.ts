import type { MiddlewareHandler } from 'hono';
import type { RefusalFacts } from '../../../audit/refusals.js';
import { GatewayError } from '../../../errors.js';
import type { Holdings } from '../../../limits/keyed.js';
import { readCapped } from '../../../read-capped.js';
import { clientIp, edgeError, type GatewayEnv } from '../../context.js';

export interface BodyCapOptions {
  /** Largest request body accepted, in bytes. */
  maxBytes: number;
  /** Bodies being read at once, per client address. */
  inFlight?: Holdings;
  /** Records a refused body before the answer goes out. */
  onRefused: (limit: 'max_body_bytes' | 'max_bodies_in_flight_per_ip', facts: RefusalFacts) => Promise<void>;
}

/**
 * The body of a POST: required to be application/json, read under the cap while it streams (413 as
 * soon as it is over, whatever Content-Length says), parsed once into `c.get('body')`. Malformed JSON is
 * a JSON-RPC parse error; a body that is not an object or array is an invalid request.
 */
export const bodyCap = (opts: BodyCapOptions): MiddlewareHandler<GatewayEnv> => {
  if (!(Number.isSafeInteger(opts.maxBytes) && opts.maxBytes > 0)) throw new Error('maxBytes must be a positive integer');
  const { maxBytes } = opts;
  return async function bodyCap(c, next) {
    if (c.req.method !== 'POST') {
      c.set('body', undefined);
      await next();
      return undefined;
    }
    const ct = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/json') return edgeError(c, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    const tooLarge = async () => {
      await opts.onRefused('max_body_bytes', { requestId: c.get('requestId'), clientIp: clientIp(c) });
      const e = new GatewayError('ERR_BODY_TOO_LARGE', `request body exceeds ${maxBytes} bytes`);
      return edgeError(c, 413, -32000, e.message, { code: e.code }, { connection: 'close' });
    };
    if (Number(c.req.header('content-length') ?? '0') > maxBytes) return tooLarge();
    const ip = clientIp(c);
    const slot = opts.inFlight?.take(ip ?? 'unknown');
    if (slot !== undefined && 'refused' in slot) {
      await opts.onRefused('max_bodies_in_flight_per_ip', { requestId: c.get('requestId'), clientIp: ip });
      return edgeError(
        c,
        429,
        -32029,
        'too many request bodies in flight from this address',
        { code: 'ERR_RATE_LIMITED', retry_after_s: 1 },
        { connection: 'close', 'retry-after': '1' },
      );
    }
    // On Node the socket stream is read directly: materialising the web Request's ReadableStream
    // cost more than parsing (it was the largest single item in the gateway's CPU profile). It is
    // left open when the cap stops the read, so the 413 can still be sent on it.
    const incoming = c.env?.incoming;
    const source = incoming ?? c.req.raw.body;
    let raw: Buffer | 'too_large';
    try {
      raw = source ? await readCapped(source, maxBytes) : Buffer.alloc(0);
    } catch {
      // The client went away (or the request timeout cut it) before its body ended.
      return edgeError(c, 400, -32600, 'Invalid Request: the request body ended early', undefined, { connection: 'close' });
    } finally {
      slot?.release();
    }
    if (raw === 'too_large') return tooLarge();
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      return edgeError(c, 400, -32700, 'Parse error: the body is not valid JSON');
    }
    if (parsed === null || typeof parsed !== 'object') return edgeError(c, 400, -32600, 'Invalid Request: expected a JSON-RPC object or batch');
    c.set('body', parsed);
    await next();
    return undefined;
  };
};
