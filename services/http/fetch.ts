/**
 * The guarded fetcher behind `fetchText`. For every hop (the first URL and each redirect):
 *   parse (WHATWG URL: canonicalises decimal/octal/hex IPv4 and IDNs) -> scheme (https; http only
 *   when allowed) -> no credentials in the URL -> host allowlist -> port allowlist -> resolve once
 *   -> every resolved address must be global unicast (services/common/ip.ts) -> connect to exactly that checked
 *   address (the socket is opened to the IP literal with SNI/Host set to the name, so there is no
 *   second lookup and DNS rebinding cannot redirect the connection).
 * Size and time caps apply while streaming; only text content types are returned; HTML is converted
 * to text. Resolve, check and connect are the shared guard (services/common/guarded-net.ts); in
 * test-hook mode its resolver is a fixed table (never the network) and its connect hook
 * refuses, and reports on stderr, any address outside loopback.
 */
import type { IncomingMessage } from 'node:http';
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import { ToolError } from '../common/tool.js';
import { decodeTextOrBinary } from '../common/text.js';
import { hostAllowed } from './config.js';
import type { HttpConfig } from './config.js';
import { GuardedNet, urlPort } from '../common/guarded-net.js';
import { htmlToText } from './html.js';

/** The structured result of one fetch. */
export interface FetchResult {
  url: string;
  status: number;
  content_type: string;
  bytes: number;
  truncated: boolean;
  redirects: number;
  text: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const TEXT_TYPES = /^(text\/[a-z0-9.+-]+|application\/(json|xml|javascript|ecmascript|x-javascript|yaml|x-yaml|toml|ld\+json|[a-z0-9.-]+\+(json|xml)))$/;

/** Parses a Content-Type header into media type and charset. */
function parseContentType(raw: string | undefined): { type: string; charset: string } {
  if (!raw) return { type: '', charset: 'utf-8' };
  const [type, ...params] = raw.split(';');
  let charset = 'utf-8';
  for (const p of params) {
    const m = /^\s*charset\s*=\s*"?([^";\s]+)"?\s*$/i.exec(p);
    if (m) charset = m[1]!.toLowerCase();
  }
  return { type: type!.trim().toLowerCase(), charset };
}

/** Fetches text for the http service under the configured guards. */
export class GuardedFetcher {
  private readonly cfg: HttpConfig;
  /** The shared SSRF guard (services/common/guarded-net.ts): resolve once, check, connect to the checked address. */
  private readonly net: GuardedNet;

  constructor(cfg: HttpConfig) {
    this.cfg = cfg;
    this.net = new GuardedNet(cfg.test);
  }

  /**
   * Checks one URL against scheme, credential, host and port rules, then against the reach the
   * call's decision narrowed it to (the authorised purpose's hosts and ports); returns the parsed URL.
   */
  checkUrl(raw: string, reach: CredentialReach | null = null): URL {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new ToolError('invalid_url', 'URL refused: not a valid absolute URL');
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.cfg.allowHttp)) {
      throw new ToolError('scheme', this.cfg.allowHttp ? 'URL refused: only http and https are allowed' : 'URL refused: only https is allowed');
    }
    if (url.username !== '' || url.password !== '') throw new ToolError('credentials', 'URL refused: credentials in URLs are not allowed');
    const host = url.hostname;
    if (host.endsWith('.')) throw new ToolError('host', 'URL refused: host names with a trailing dot are not accepted');
    if (host.startsWith('[')) throw new ToolError('host_not_allowed', 'URL refused: IPv6 literal hosts are not in the allowlist');
    if (!hostAllowed(this.cfg.allow, host)) throw new ToolError('host_not_allowed', 'URL refused: host is not in the allowlist');
    const port = urlPort(url);
    if (!this.cfg.ports.has(port)) throw new ToolError('port', 'URL refused: port is not allowed');
    // The decision's reach narrows the service's own allowlist, on the first URL and on every hop.
    if (reach?.hosts !== undefined && !reach.hosts.includes(host)) {
      throw new ToolError('host_not_in_reach', "URL refused: host is outside this call's authorised reach");
    }
    if (reach?.ports !== undefined && !reach.ports.includes(port)) {
      throw new ToolError('port_not_in_reach', "URL refused: port is outside this call's authorised reach");
    }
    return url;
  }

  /**
   * Fetches `raw` with GET or HEAD, following at most the configured number of checked redirects;
   * every hop is checked against the configuration and the call's `reach`.
   */
  async fetchText(raw: string, method: 'GET' | 'HEAD', maxBytes: number, reach: CredentialReach | null = null): Promise<FetchResult> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.cfg.timeoutMs);
    try {
      let url = this.checkUrl(raw, reach);
      for (let redirects = 0; ; redirects++) {
        const res = await this.net.send({
          url,
          method,
          headers: {
            'user-agent': 'micro-mcp-http/0.1',
            accept: 'text/*, application/json, application/xml;q=0.9, */*;q=0.1',
            'accept-encoding': 'identity',
          },
          signal: ac.signal,
        });
        const location = res.headers.location;
        if (REDIRECTS.has(res.statusCode ?? 0) && location) {
          res.destroy();
          if (redirects >= this.cfg.maxRedirects) throw new ToolError('too_many_redirects', `too many redirects (more than ${this.cfg.maxRedirects})`);
          let next: string;
          try {
            next = new URL(location, url).href;
          } catch {
            throw new ToolError('invalid_url', 'redirect refused: invalid Location');
          }
          try {
            url = this.checkUrl(next, reach);
          } catch (e) {
            if (e instanceof ToolError) throw new ToolError(e.code, `redirect ${e.message}`);
            throw e;
          }
          continue;
        }
        return await this.readBody(url, res, method, maxBytes, redirects, ac.signal);
      }
    } catch (e) {
      if (ac.signal.aborted && !(e instanceof ToolError && e.code !== 'io')) throw new ToolError('timeout', `timed out after ${this.cfg.timeoutMs} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private readBody(url: URL, res: IncomingMessage, method: string, maxBytes: number, redirects: number, signal: AbortSignal): Promise<FetchResult> {
    const status = res.statusCode ?? 0;
    const ct = parseContentType(res.headers['content-type']);
    const base = { url: url.href, status, content_type: ct.type, redirects };
    if (method === 'HEAD') {
      res.destroy();
      const len = Number(res.headers['content-length'] ?? 0);
      return Promise.resolve({ ...base, bytes: Number.isFinite(len) ? len : 0, truncated: false, text: `HTTP ${status}${ct.type ? `, ${ct.type}` : ''}` });
    }
    const enc = res.headers['content-encoding'];
    if (enc && enc.toLowerCase() !== 'identity') {
      res.destroy();
      return Promise.reject(new ToolError('encoding', 'response refused: compressed content encodings are not accepted'));
    }
    if (!TEXT_TYPES.test(ct.type)) {
      res.destroy();
      return Promise.reject(new ToolError('content_type', ct.type ? 'response refused: not a text content type' : 'response refused: no content type'));
    }
    return new Promise<FetchResult>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      let truncated = false;
      const finish = () => {
        const body = Buffer.concat(chunks, total);
        const decoded = decodeTextOrBinary(body, ct.charset, truncated);
        if (decoded === undefined) {
          reject(new ToolError('binary', 'response refused: binary content'));
          return;
        }
        const text = ct.type === 'text/html' || ct.type === 'application/xhtml+xml' ? htmlToText(decoded) : decoded;
        resolve({ ...base, bytes: total, truncated, text });
      };
      res.on('data', (chunk: Buffer) => {
        if (truncated) return;
        const room = maxBytes - total;
        if (chunk.length >= room) {
          chunks.push(chunk.subarray(0, room));
          total += room;
          truncated = chunk.length > room || res.readableLength > 0 || !res.complete;
          res.destroy();
          finish();
          return;
        }
        chunks.push(chunk);
        total += chunk.length;
      });
      res.on('end', () => {
        if (!truncated) finish();
      });
      res.on('error', () => {
        if (truncated) return;
        reject(signal.aborted ? new ToolError('timeout', 'timed out while reading the body') : new ToolError('io', 'connection failed while reading the body'));
      });
      res.on('close', () => {
        if (!truncated && !res.complete)
          reject(
            signal.aborted ? new ToolError('timeout', 'timed out while reading the body') : new ToolError('io', 'connection closed before the body ended'),
          );
      });
    });
  }
}
