/**
 * The guarded fetcher behind `fetchText`. For every hop (the first URL and each redirect):
 *   parse (WHATWG URL: canonicalises decimal/octal/hex IPv4 and IDNs) -> scheme (https; http only
 *   when allowed) -> no credentials in the URL -> host allowlist -> port allowlist -> resolve once
 *   -> every resolved address must be global unicast (ip.ts) -> connect to exactly that checked
 *   address (the socket is opened to the IP literal with SNI/Host set to the name, so there is no
 *   second lookup and DNS rebinding cannot redirect the connection).
 * Size and time caps apply while streaming; only text content types are returned; HTML is converted
 * to text. In test-hook mode the resolver is a fixed table (never the network) and the connect hook
 * refuses, and reports on stderr, any address outside loopback.
 */
import { request as httpRequest } from 'node:http';
import type { ClientRequest, ClientRequestArgs, IncomingMessage } from 'node:http';
import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { lookup } from 'node:dns/promises';
import type { CredentialReach } from '../../schemas/contracts/service-credential.js';
import { ToolError } from '../common/tool.js';
import { decodeTextOrBinary } from '../common/text.js';
import { hostAllowed } from './config.js';
import type { HttpConfig } from './config.js';
import { blockedReason, isLoopback } from './ip.js';
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
  private readonly lookups = new Map<string, number>();

  constructor(cfg: HttpConfig) {
    this.cfg = cfg;
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
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
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

  /** Resolves a host name once (test table in test mode, the system resolver otherwise). */
  async resolve(host: string, signal: AbortSignal): Promise<string[]> {
    if (isIP(host)) return [host];
    if (this.cfg.test) {
      const answers = this.cfg.test.resolve.get(host);
      if (!answers) throw new ToolError('dns', 'host could not be resolved');
      const n = this.lookups.get(host) ?? 0;
      this.lookups.set(host, n + 1);
      return answers[Math.min(n, answers.length - 1)]!;
    }
    const aborted = new Promise<never>((_, reject) =>
      signal.addEventListener('abort', () => reject(new ToolError('timeout', 'timed out resolving the host')), { once: true }),
    );
    try {
      const res = await Promise.race([lookup(host, { all: true, verbatim: true }), aborted]);
      return res.map((r) => r.address);
    } catch (e) {
      if (e instanceof ToolError) throw e;
      throw new ToolError('dns', 'host could not be resolved');
    }
  }

  /** Refuses an address unless it is global unicast (or loopback in test mode with the flag). */
  checkAddress(address: string): void {
    if (this.cfg.test?.allowLoopback && isLoopback(address)) return;
    const reason = blockedReason(address);
    if (reason) throw new ToolError('address_blocked', `URL refused: the host resolves to a non-public address (${reason})`);
  }

  /** The actual socket connect: always to a checked IP literal; re-checked here as a last line. */
  /**
   * The last line of SSRF defence: the connect itself. A refused address throws here, which Node's
   * ClientRequest turns into its 'error' event (the ToolError is passed on as is).
   */
  private connect(url: URL, address: string, port: number): NonNullable<ClientRequestArgs['createConnection']> {
    return () => {
      const test = this.cfg.test;
      const refused = test ? !isLoopback(address) : blockedReason(address) !== undefined;
      if (refused) {
        if (test) process.stderr.write(`test-hook: refused connect to ${address} port ${port}\n`);
        throw new ToolError('address_blocked', 'URL refused: connection to a non-public address');
      }
      if (url.protocol === 'https:') {
        const servername = isIP(url.hostname) ? undefined : url.hostname;
        return tlsConnect({ host: address, port, ...(servername ? { servername } : {}), ALPNProtocols: ['http/1.1'] });
      }
      return netConnect({ host: address, port });
    };
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
        const addresses = await this.resolve(url.hostname, ac.signal);
        if (addresses.length === 0) throw new ToolError('dns', 'host could not be resolved');
        for (const a of addresses) this.checkAddress(a); // any bad answer refuses the host
        const res = await this.send(url, addresses[0]!, method, ac.signal);
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

  private send(url: URL, address: string, method: string, signal: AbortSignal): Promise<IncomingMessage> {
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    return new Promise<IncomingMessage>((resolve, reject) => {
      let req: ClientRequest;
      try {
        req = httpRequest({
          host: address,
          port,
          method,
          path: url.pathname + url.search,
          headers: {
            host: url.host,
            'user-agent': 'micro-mcp-http/0.1',
            accept: 'text/*, application/json, application/xml;q=0.9, */*;q=0.1',
            'accept-encoding': 'identity',
            connection: 'close',
          },
          createConnection: this.connect(url, address, port),
          signal,
        });
      } catch {
        reject(new ToolError('io', 'request failed'));
        return;
      }
      req.on('response', resolve);
      req.on('error', (e) =>
        reject(e instanceof ToolError ? e : signal.aborted ? new ToolError('timeout', 'timed out') : new ToolError('io', 'connection failed')),
      );
      req.end();
    });
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
