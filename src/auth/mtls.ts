/**
 * Optional mutual TLS from the gateway to remote services: a `fetch` that presents the gateway's
 * client certificate and trusts only the configured CA. Built on node:https because Node 20's global
 * fetch cannot take a client certificate without the undici package. Streams both ways, so it works
 * for the SDK's Streamable HTTP client transport (JSON and SSE responses) via its `fetch` option.
 */
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { GatewayError } from '../errors.js';
import type { MtlsConfig } from './config.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

async function readPem(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    throw new GatewayError('ERR_CONFIG_INVALID', `cannot read ${key}`, { key: `auth.mtls.${key}` }, { cause });
  }
}

function toHeaders(h: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.append(k, x);
    else out.set(k, v);
  }
  return out;
}

/**
 * Loads the certificate, key and CA once and returns a fetch that uses them for every request.
 * Only https URLs are accepted; redirects are returned to the caller, never followed.
 */
export async function createMtlsFetch(cfg: MtlsConfig): Promise<FetchLike> {
  const [cert, key, ca] = await Promise.all([readPem(cfg.cert_file, 'cert_file'), readPem(cfg.key_file, 'key_file'), readPem(cfg.ca_file, 'ca_file')]);
  let agent: Agent;
  try {
    agent = new Agent({ cert, key, ca, keepAlive: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' });
  } catch (cause) {
    throw new GatewayError('ERR_CONFIG_INVALID', 'the mTLS certificate, key or CA is invalid', { key: 'auth.mtls' }, { cause });
  }

  return async (input, init = {}) => {
    const req = input instanceof Request ? input : undefined;
    const url = new URL(req ? req.url : input instanceof URL ? input.href : (input as string));
    if (url.protocol !== 'https:') throw new TypeError('mTLS fetch accepts https URLs only');
    const method = (init.method ?? req?.method ?? 'GET').toUpperCase();
    const headers = new Headers(req?.headers);
    new Headers(init.headers).forEach((v, k) => {
      headers.set(k, v);
    });
    const signal = init.signal ?? req?.signal ?? undefined;
    let body: Buffer | ReadableStream<Uint8Array> | null = null;
    const rawBody = init.body ?? req?.body ?? null;
    if (typeof rawBody === 'string') body = Buffer.from(rawBody);
    else if (rawBody instanceof Uint8Array) body = Buffer.from(rawBody);
    else if (rawBody instanceof ArrayBuffer) body = Buffer.from(rawBody);
    else if (rawBody instanceof ReadableStream) body = rawBody as ReadableStream<Uint8Array>;
    else if (rawBody !== null) body = Buffer.from(await new Response(rawBody as BodyInit).arrayBuffer());

    const outHeaders: Record<string, string> = {};
    headers.forEach((v, k) => {
      outHeaders[k] = v;
    });
    if (Buffer.isBuffer(body)) outHeaders['content-length'] = String(body.length);

    return new Promise<Response>((resolve, reject) => {
      const r = request(
        url,
        {
          method,
          headers: outHeaders,
          agent,
          ...(cfg.server_name ? { servername: cfg.server_name } : {}),
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 502;
          const nullBody = method === 'HEAD' || status === 204 || status === 304;
          if (nullBody) res.resume();
          resolve(
            new Response(nullBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
              status,
              statusText: res.statusMessage ?? '',
              headers: toHeaders(res.headers),
            }),
          );
        },
      );
      r.on('error', reject);
      if (body === null) r.end();
      else if (Buffer.isBuffer(body)) r.end(body);
      else Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>).pipe(r);
    });
  };
}
