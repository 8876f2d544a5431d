/**
 * The metrics listener: GET /metrics on an address of its own (config `metrics.listen`), never on
 * the agent port, so a scraper needs no agent token and an agent never reaches the metrics. With
 * `metrics.token_file` a scraper must send that bearer token; without it the address must be
 * loopback (refused at start otherwise: metrics name services, tools and rule ids).
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GatewayError } from '../errors.js';
import type { Logger } from '../types.js';
import type { GatewayMetrics } from './metrics.js';

export interface MetricsListenerOptions {
  /** host:port (config `metrics.listen`). */
  listen: string;
  tokenFile?: string | undefined;
  metrics: GatewayMetrics;
  log: Logger;
}

export interface MetricsListener {
  /** The URL of /metrics as bound (the real port when the config said 0). */
  url: string;
  close(): Promise<void>;
}

/** Splits "host:port" / "[v6]:port". */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new GatewayError('ERR_CONFIG_INVALID', `metrics.listen must be host:port, not "${listen}"`, { key: 'metrics.listen' });
  return { host: (m[1] ?? m[2])!, port };
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

/** Starts the listener; rejects on a bad address, an open non-loopback address or an unreadable token file. */
export async function startMetricsListener(o: MetricsListenerOptions): Promise<MetricsListener> {
  const { host, port } = parseListen(o.listen);
  let token: Buffer | undefined;
  if (o.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(o.tokenFile, 'utf8').trim();
    } catch (e) {
      throw new GatewayError('ERR_CONFIG_INVALID', `metrics.token_file cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, {
        key: 'metrics.token_file',
      });
    }
    if (text.length < 16)
      throw new GatewayError('ERR_CONFIG_INVALID', 'metrics.token_file must hold a token of at least 16 characters', { key: 'metrics.token_file' });
    token = Buffer.from(`Bearer ${text}`);
  } else if (!isLoopback(host)) {
    throw new GatewayError('ERR_CONFIG_INVALID', `metrics.listen on ${host} (not loopback) needs metrics.token_file`, { key: 'metrics.token_file' });
  }
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (token) {
      const sent = Buffer.from(req.headers.authorization ?? '');
      if (sent.length !== token.length || !timingSafeEqual(sent, token)) {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="metrics"', 'content-type': 'text/plain' }).end('unauthorized\n');
        return;
      }
    }
    o.metrics.text().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (e: Error) => {
        o.log.error({ err: e.message }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${h}:${addr.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
