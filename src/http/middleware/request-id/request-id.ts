import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';

const WELL_FORMED = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * X-Request-Id: the caller's when well-formed (so one id follows a request across systems), else a
 * fresh UUID; set as `c.get('requestId')` and echoed on every response. Hono's own request-id middleware
 * is not used: it does not stamp responses a handler builds itself (the MCP SDK's).
 */
export const requestId = (): MiddlewareHandler =>
  async function requestId(c, next) {
    const given = c.req.header('x-request-id');
    const id = given !== undefined && WELL_FORMED.test(given) ? given : randomUUID();
    c.set('requestId', id);
    await next();
    c.res.headers.set('x-request-id', id);
  };
