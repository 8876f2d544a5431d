import type { MiddlewareHandler } from 'hono';
import { edgeError } from '../../context.js';

export interface HostOriginOptions {
  /** Host header names this gateway answers to. */
  hosts: readonly string[];
  /** Hostnames a browser Origin may have (a request without Origin passes). */
  origins: readonly string[];
  /** Whole origins (scheme://host[:port]) that pass as well: the CORS origins (server.cors.origins). */
  exactOrigins?: readonly string[];
}

/**
 * DNS-rebinding protection: the Host header must name this gateway, and a browser Origin (when sent)
 * must be allowed. Both lists are checked once here, when the middleware is built.
 */
export const hostOrigin = (opts: HostOriginOptions): MiddlewareHandler => {
  if (opts.hosts.length === 0) throw new Error('allowed_hosts must not be empty');
  const hosts = new Set(opts.hosts.map((h) => h.toLowerCase()));
  const origins = new Set(opts.origins.map((h) => h.toLowerCase()));
  const exact = new Set(opts.exactOrigins ?? []);
  return async function hostOrigin(c, next) {
    const host = hostnameOf(c.req.header('host'));
    if (host === undefined || !hosts.has(host)) return edgeError(c, 403, -32000, 'Forbidden: Host not allowed');
    const origin = c.req.header('origin');
    if (origin !== undefined) {
      const oh = urlHostname(origin);
      if (oh === undefined || (!origins.has(oh) && !exact.has(origin))) return edgeError(c, 403, -32000, 'Forbidden: Origin not allowed');
    }
    await next();
    return undefined;
  };
};

function hostnameOf(hostHeader: string | undefined): string | undefined {
  return hostHeader ? urlHostname(`http://${hostHeader}`) : undefined;
}

function urlHostname(url: string): string | undefined {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}
