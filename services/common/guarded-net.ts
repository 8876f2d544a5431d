/**
 * The SSRF guard every service that talks to the network shares (http, github, the vector service's
 * remote embedder): resolve a host name once (a fixed table in test-hook mode, never the network),
 * refuse it unless every answer is global unicast (ip.ts), and connect to exactly that checked
 * address (the socket is opened to the IP literal with SNI and Host carrying the name), so there is
 * no second lookup and DNS rebinding cannot redirect the connection. The connect hook checks the
 * address once more: in test-hook mode it refuses, and reports on stderr, anything outside loopback,
 * so even a broken guard cannot open a connection off the machine in a test.
 *
 * Which hosts, schemes and ports a service may reach at all is its own business (an allowlist, one
 * base URL); this module guards the addresses behind them and sends one request.
 */
import { request as httpRequest } from 'node:http';
import type { ClientRequest, ClientRequestArgs, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { lookup } from 'node:dns/promises';
import { UsageError } from './args.js';
import type { FlagSpecs } from './args.js';
import { ToolError } from './tool.js';
import { blockedReason, isLoopback } from './ip.js';

/** Test-only network hooks: a fixed resolver table, and loopback allowed by the address guard. */
export interface NetTestHooks {
  /** host -> the answers of its 1st, 2nd, ... lookup (the last repeats); each answer one or more addresses. */
  resolve: Map<string, string[][]>;
  allowLoopback: boolean;
}

/** The test-only flags (rejected unless the service's hook env variable is "1"). */
export function testHookFlags(envName: string) {
  return {
    'test-resolve': {
      type: 'string',
      multiple: true,
      value: 'HOST=ADDR[,ADDR2..]',
      help: `TEST ONLY (needs ${envName}=1): fake resolver; the Nth lookup of HOST answers ADDRn (the last repeats); "a+b" answers two addresses at once`,
    },
    'test-allow-loopback': { type: 'boolean', help: `TEST ONLY (needs ${envName}=1): let the address guard pass 127.0.0.0/8 and ::1` },
  } satisfies FlagSpecs;
}

/**
 * Reads the test-hook flags: undefined outside test-hook mode (and a usage error when a test flag is
 * given without `envName=1`), the hooks otherwise. In test-hook mode the resolver is always the table.
 */
export function parseTestHooks(
  flags: { readonly 'test-resolve'?: readonly string[] | undefined; readonly 'test-allow-loopback'?: boolean | undefined },
  env: NodeJS.ProcessEnv,
  envName: string,
): NetTestHooks | undefined {
  const testResolve = flags['test-resolve'] ?? [];
  const testLoopback = flags['test-allow-loopback'] === true;
  const hooks = env[envName] === '1';
  if ((testResolve.length > 0 || testLoopback) && !hooks)
    throw new UsageError(`--test-resolve and --test-allow-loopback are test-only: they need ${envName}=1`);
  if (!hooks) return undefined;
  const resolve = new Map<string, string[][]>();
  for (const entry of testResolve) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new UsageError(`--test-resolve ${entry}: expected HOST=ADDR[,ADDR2]`);
    const answers = entry
      .slice(eq + 1)
      .split(',')
      .map((a) => a.split('+'));
    for (const a of answers.flat()) if (isIP(a) === 0) throw new UsageError(`--test-resolve ${entry}: "${a}" is not an IP address`);
    resolve.set(entry.slice(0, eq).toLowerCase(), answers);
  }
  return { resolve, allowLoopback: testLoopback };
}

/** The default port of an http(s) URL. */
export function urlPort(url: URL): number {
  return url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
}

/** One request to send through the guard. */
export interface GuardedRequest {
  url: URL;
  method: string;
  headers: OutgoingHttpHeaders;
  body?: Uint8Array | string;
  signal: AbortSignal;
}

/** Resolves, checks and connects under the SSRF guard; one instance per service. */
export class GuardedNet {
  private readonly test: NetTestHooks | undefined;
  private readonly lookups = new Map<string, number>();

  constructor(test: NetTestHooks | undefined) {
    this.test = test;
  }

  /** Resolves a host name once (the test table in test mode, the system resolver otherwise). */
  async resolve(host: string, signal: AbortSignal): Promise<string[]> {
    if (isIP(host)) return [host];
    if (this.test) {
      const answers = this.test.resolve.get(host);
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
    if (this.test?.allowLoopback && isLoopback(address)) return;
    const reason = blockedReason(address);
    if (reason) throw new ToolError('address_blocked', `URL refused: the host resolves to a non-public address (${reason})`);
  }

  /** Resolves `host` and checks every answer (any bad answer refuses the host); the address to connect to. */
  async checkedAddress(host: string, signal: AbortSignal): Promise<string> {
    const addresses = await this.resolve(host, signal);
    if (addresses.length === 0) throw new ToolError('dns', 'host could not be resolved');
    for (const a of addresses) this.checkAddress(a);
    return addresses[0]!;
  }

  /**
   * The last line of SSRF defence: the connect itself, always to a checked IP literal. A refused
   * address throws here, which Node's ClientRequest turns into its 'error' event (the ToolError is
   * passed on as is).
   */
  private connect(url: URL, address: string, port: number): NonNullable<ClientRequestArgs['createConnection']> {
    return () => {
      const test = this.test;
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
   * Sends one request to `req.url` (whose scheme, host and port the caller has already allowed):
   * resolve and check, then connect to the checked address. Resolves with the response head; the
   * caller reads (and caps) the body. No redirect is followed here.
   */
  async send(req: GuardedRequest): Promise<IncomingMessage> {
    const address = await this.checkedAddress(req.url.hostname, req.signal);
    const port = urlPort(req.url);
    return new Promise<IncomingMessage>((resolve, reject) => {
      let cr: ClientRequest;
      try {
        cr = httpRequest({
          host: address,
          port,
          method: req.method,
          path: req.url.pathname + req.url.search,
          headers: { host: req.url.host, connection: 'close', ...req.headers },
          createConnection: this.connect(req.url, address, port),
          signal: req.signal,
        });
      } catch {
        reject(new ToolError('io', 'request failed'));
        return;
      }
      cr.on('response', resolve);
      cr.on('error', (e) =>
        reject(e instanceof ToolError ? e : req.signal.aborted ? new ToolError('timeout', 'timed out') : new ToolError('io', 'connection failed')),
      );
      cr.end(req.body);
    });
  }
}

/**
 * Reads a whole response body under a cap: more than `maxBytes` is an error (`too_large`), not a
 * truncation (a cut JSON document is useless to the API clients that use this).
 */
export function readCapped(res: IncomingMessage, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      total += chunk.length;
      if (total > maxBytes) {
        done = true;
        res.destroy();
        reject(new ToolError('too_large', `response refused: larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks, total));
    });
    res.on('error', () => {
      if (done) return;
      done = true;
      reject(signal.aborted ? new ToolError('timeout', 'timed out while reading the body') : new ToolError('io', 'connection failed while reading the body'));
    });
    res.on('close', () => {
      if (done) return;
      done = true;
      reject(signal.aborted ? new ToolError('timeout', 'timed out while reading the body') : new ToolError('io', 'connection closed before the body ended'));
    });
  });
}
