/**
 * The GitHub REST client of the github service. Every request goes to the configured base URL's
 * origin and below its path, through the shared SSRF guard (services/common/guarded-net.ts: resolve
 * once, global unicast only, connect to the checked address); a pagination link (`Link: rel="next"`)
 * or a redirect elsewhere is refused. The token is sent only there, in the Authorization header, and
 * never appears in a message.
 *
 * Rate limits are honoured (GitHub's documented answers): a 403 or 429 with `retry-after` waits that
 * many seconds; a 403 or 429 with `x-ratelimit-remaining: 0` waits until `x-ratelimit-reset` (epoch
 * seconds). A wait up to --max-retry-wait-ms is waited out and the request retried (at most
 * --max-retries times); a longer one ends the call with `rate_limited` and the seconds to wait.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { GuardedNet, readCapped, urlPort } from '../common/guarded-net.js';
import { ToolError } from '../common/tool.js';
import type { GithubApi, GithubConfig } from './config.js';

/** One decoded API answer. */
export interface ApiResponse {
  status: number;
  headers: IncomingHttpHeaders;
  json: unknown;
  /** The URL of the next page (`Link: rel="next"`), checked to be within the base URL. */
  next?: URL;
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** The `rel="next"` target of a Link header, if any. */
export function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /(^|;)\s*rel="?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/.test(m[2]!)) return m[1];
  }
  return undefined;
}

/** Seconds to wait before retrying a rate-limited answer; undefined when the answer is not one. */
export function rateLimitWaitS(status: number, h: IncomingHttpHeaders, nowMs: number): number | undefined {
  if (status !== 403 && status !== 429) return undefined;
  const retryAfter = header(h, 'retry-after');
  if (retryAfter !== undefined && /^\d{1,6}$/.test(retryAfter.trim())) return Number(retryAfter.trim());
  if (header(h, 'x-ratelimit-remaining') === '0') {
    const reset = Number(header(h, 'x-ratelimit-reset'));
    if (Number.isFinite(reset) && reset > 0) return Math.max(0, Math.ceil(reset - nowMs / 1000));
    return 60; // GitHub's advice when the reset is unknown: wait at least a minute
  }
  // A secondary rate limit without headers: GitHub says to wait at least a minute.
  return status === 429 ? 60 : undefined;
}

/** A short, safe description of an error answer: GitHub's `message` (it never holds the token), capped. */
function apiMessage(json: unknown): string | undefined {
  const m = typeof json === 'object' && json !== null ? (json as { message?: unknown }).message : undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is this regex's job.
  return typeof m === 'string' ? m.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 200) : undefined;
}

const REDIRECTS = new Set([301, 302, 307, 308]);

export class GithubClient {
  private readonly api: GithubApi;
  private readonly cfg: GithubConfig;
  private readonly net: GuardedNet;
  private readonly basePath: string;

  constructor(api: GithubApi, cfg: GithubConfig) {
    this.api = api;
    this.cfg = cfg;
    this.net = new GuardedNet(cfg.test);
    this.basePath = api.base.pathname.replace(/\/$/, '');
  }

  /** The URL of `path` (which starts with "/") below the base URL, with `query`. */
  url(path: string, query: Record<string, string | number | undefined> = {}): URL {
    const u = new URL(this.api.base.href);
    u.pathname = `${this.basePath}${path}`;
    // encodeURIComponent, not URLSearchParams: a space is %20 (as GitHub's clients send it), not "+".
    const q = Object.entries(query)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join('&');
    u.search = q === '' ? '' : `?${q}`;
    return u;
  }

  /** Throws unless `u` is on the base URL's origin and below its path (what a link or redirect may point to). */
  checkWithinBase(u: URL, what: string): void {
    const b = this.api.base;
    const sameOrigin = u.protocol === b.protocol && u.hostname === b.hostname && urlPort(u) === urlPort(b);
    const below = this.basePath === '' || u.pathname === this.basePath || u.pathname.startsWith(`${this.basePath}/`);
    if (!sameOrigin || !below || u.username !== '' || u.password !== '')
      throw new ToolError('link_refused', `${what} refused: it leaves the configured API base URL`);
  }

  /**
   * Sends one request (GET follows redirects within the base URL), honouring rate limits, and decodes
   * the JSON answer. Non-2xx answers become ToolErrors with stable codes.
   */
  async request(method: 'GET' | 'POST', url: URL, body: unknown, signal: AbortSignal): Promise<ApiResponse> {
    let target = url;
    let redirects = 0;
    for (let attempt = 0; ; attempt++) {
      this.checkWithinBase(target, 'the request');
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const res = await this.net.send({
        url: target,
        method,
        headers: {
          accept: 'application/vnd.github.v3+json',
          authorization: `token ${this.api.token}`,
          'user-agent': 'micro-mcp-github/0.1',
          'x-github-api-version': '2022-11-28',
          'accept-encoding': 'identity',
          ...(payload !== undefined ? { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload) } : {}),
        },
        ...(payload !== undefined ? { body: payload } : {}),
        signal,
      });
      const status = res.statusCode ?? 0;
      const raw = await readCapped(res, this.cfg.maxResponseBytes, signal);
      if (REDIRECTS.has(status) && method === 'GET') {
        const location = header(res.headers, 'location');
        if (location === undefined || ++redirects > 3) throw new ToolError('redirect', 'the API redirected too often or without a location');
        let next: URL;
        try {
          next = new URL(location, target);
        } catch {
          throw new ToolError('redirect', 'the API redirected to an invalid location');
        }
        this.checkWithinBase(next, 'a redirect');
        target = next;
        attempt--;
        continue;
      }
      let json: unknown;
      const text = raw.toString('utf8');
      if (text !== '') {
        try {
          json = JSON.parse(text);
        } catch {
          throw new ToolError('bad_response', `the API answered HTTP ${status} with something other than JSON`);
        }
      }
      const wait = rateLimitWaitS(status, res.headers, Date.now());
      if (wait !== undefined) {
        if (wait * 1000 <= this.cfg.maxRetryWaitMs && attempt < this.cfg.maxRetries) {
          await sleep(wait * 1000, signal);
          continue;
        }
        throw new ToolError('rate_limited', `rate limited by the API: retry in ${wait} s`, { retry_after_s: wait });
      }
      if (status >= 200 && status < 300) {
        const out: ApiResponse = { status, headers: res.headers, json };
        const link = nextLink(header(res.headers, 'link'));
        if (link !== undefined) {
          let next: URL;
          try {
            next = new URL(link, target);
          } catch {
            throw new ToolError('link_refused', 'a pagination link is not a valid URL');
          }
          this.checkWithinBase(next, 'a pagination link');
          out.next = next;
        }
        return out;
      }
      const msg = apiMessage(json);
      const detail = msg === undefined ? `HTTP ${status}` : `HTTP ${status}: ${msg}`;
      if (status === 401) throw new ToolError('unauthorized', `the API refused the service's token (${detail})`);
      if (status === 403) throw new ToolError('forbidden', `the API refused the request (${detail})`);
      if (status === 404) throw new ToolError('not_found', `not found, or not visible to the service's token (${detail})`);
      if (status === 410) throw new ToolError('gone', `gone (${detail})`);
      if (status === 422) throw new ToolError('invalid', `the API refused the request as invalid (${detail})`);
      throw new ToolError('api_error', `the API answered ${detail}`);
    }
  }
}

/** Waits `ms`, or rejects when the call's time budget ends first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new ToolError('timeout', 'the call ran out of time'));
      return;
    }
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new ToolError('timeout', 'the call ran out of time while waiting out a rate limit'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
