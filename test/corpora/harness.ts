/**
 * Test harness for the services and their attack corpora, reusable by the gateway's tests:
 * starts a service as a real child process (optionally under Node's permission model) and connects
 * a real SDK v2 Client over stdio; loads the corpora; builds the fs fixture tree. Services check a
 * gateway credential on every call: the harness mints real ones with the gateway's own minter
 * (src/auth), whose JWKS file the service reads exactly as it does when the gateway spawns it.
 */
import { TOOL_ERROR_META_KEY } from '../../schemas/contracts/tool-error.js';
import type { ToolErrorFacts } from '../../schemas/contracts/tool-error.js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, linkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { CREDENTIAL_META_KEY } from '../../schemas/contracts/service-credential.js';
import { createServiceCredentialMinter } from '../../src/auth/service-credentials.js';
import type { Minter } from '../../src/auth/service-credentials.js';

/** The repository root (works from test/corpora and from dist/test/corpora). */
export const REPO = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) d = dirname(d);
  return d;
})();

/** The corpora directory in the source tree (JSON files are not compiled). */
export const CORPORA = join(REPO, 'test', 'corpora');

/** The services under services/ (dist/services/<name>/main.js). */
export type ServiceName = 'fs' | 'http' | 'vector' | 'github';

/** A running service with a connected client. */
export interface RunningService {
  client: Client;
  /** Calls a tool with a freshly minted gateway credential in `_meta` (none in insecure mode). */
  call(name: string, args: Record<string, unknown>): ReturnType<Client['callTool']>;
  /** Everything the service wrote to stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

/** A gateway-style credential minter for tests: real keys, a real JWKS file in a temp dir. */
export interface TestMinter {
  minter: Minter;
  /** The folder holding the JWKS file (what a sandboxed service needs in --allow-fs-read). */
  dir: string;
  /** The env the gateway would give the service at spawn. */
  env(service: ServiceName): Record<string, string>;
  /** A credential for one call of `tool` on `service`. */
  mint(service: string, tool: string): Promise<string>;
}

let sharedMinter: Promise<TestMinter> | undefined;

/** One minter per test process (its JWKS folder is removed when the process exits). */
export function testMinter(): Promise<TestMinter> {
  return (sharedMinter ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'micro-mcp-cred-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const minter = await createServiceCredentialMinter({ jwks_file: join(dir, 'service-jwks.json'), autoRotate: false });
    return {
      minter,
      dir,
      env: (service) => minter.serviceEnv(service),
      mint: (service, tool) => minter.mint({ service, tool, principal: { id: 'harness' }, purpose: null, decisionId: `d-${randomUUID()}` }),
    };
  })());
}

/** `_meta` carrying a fresh credential for one call. */
export async function credentialMeta(service: ServiceName, tool: string): Promise<Record<string, string>> {
  return { [CREDENTIAL_META_KEY]: await (await testMinter()).mint(service, tool) };
}

/** The `--allow-fs-read` flags a service needs for its own code (see services/README.md). */
export function codeReadFlags(): string[] {
  return [join(REPO, 'dist', 'services'), join(REPO, 'dist', 'schemas', 'contracts'), join(REPO, 'node_modules'), join(REPO, 'package.json')].map(
    (p) => `--allow-fs-read=${p}`,
  );
}

/** The fs service reads directories through their open handles: its one read grant beyond its code and roots. */
export const PROC_FD_READ = '--allow-fs-read=/proc/self/fd';

/**
 * Starts dist/services/<name>/main.js as a child process and connects a Client over stdio. By default
 * the service gets the credential env the gateway would give it (and read access to the JWKS folder
 * under the sandbox); `insecure: true` starts it with --insecure-no-credentials instead.
 */
export async function startService(
  name: ServiceName,
  args: string[],
  opts: { sandboxRead?: string[]; sandboxWrite?: string[]; env?: Record<string, string>; era?: 'legacy' | 'modern'; insecure?: boolean } = {},
): Promise<RunningService> {
  const m = opts.insecure ? undefined : await testMinter();
  const read = opts.sandboxRead ? [...opts.sandboxRead, ...(m ? [m.dir] : [])] : undefined;
  const nodeFlags = read
    ? [
        '--experimental-permission',
        ...codeReadFlags(),
        ...read.map((p) => `--allow-fs-read=${p}`),
        ...(opts.sandboxWrite ?? []).map((p) => `--allow-fs-write=${p}`),
        ...(name === 'fs' ? [PROC_FD_READ] : []),
      ]
    : [];
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      ...nodeFlags,
      '--no-warnings',
      join(REPO, 'dist', 'services', name, 'main.js'),
      ...args,
      ...(opts.sandboxRead ? [] : ['--no-sandbox-check']),
      ...(opts.insecure ? ['--insecure-no-credentials'] : []),
    ],
    env: { PATH: process.env.PATH ?? '', ...(m ? m.env(name) : {}), ...opts.env },
    stderr: 'pipe',
  });
  let err = '';
  transport.stderr?.on('data', (d: Buffer) => {
    err += d.toString('utf8');
  });
  const client = new Client({ name: 'micro-mcp-test', version: '0.0.0' }, opts.era === 'modern' ? { versionNegotiation: { mode: 'auto' } } : {});
  await client.connect(transport);
  return {
    client,
    call: async (tool, args) => client.callTool({ name: tool, arguments: args, ...(m ? { _meta: { [CREDENTIAL_META_KEY]: await m.mint(name, tool) } } : {}) }),
    stderr: () => err,
    close: async () => {
      await client.close();
    },
  };
}

/** Who refuses a case through the gateway: the policy (JSON-RPC ERR_POLICY_DENIED) or the service (tool error). */
export type Refuser = 'policy' | 'service';

/** Expected refuser per gateway policy set (see the corpora's description and test/e2e/attacks.test.ts). */
export interface GatewayExpectation {
  /** The shipped policies, token of group eng with scopes fs:read http:fetch and purpose local-dev. */
  shipped: Refuser;
  /** The test-only open policies (test/helpers/attacks.ts permissivePolicyDir), purpose attack-tests. */
  open: Refuser;
}

/** One path-escape corpus entry. */
export interface PathEscapeCase {
  id: string;
  tool: 'read' | 'list' | 'stat' | 'search';
  arguments: Record<string, unknown>;
  gateway: GatewayExpectation;
  why: string;
}

/** The fs fixture description inside path-escape.json. */
export interface FsFixture {
  roots: Record<string, string>;
  files: Record<string, string>;
  symlinks: Record<string, string>;
  fifos: string[];
  devices: string[];
  hardlinks: Record<string, string>;
}

/** Loads test/corpora/path-escape.json. */
export function loadPathEscape(): { fixture: FsFixture; cases: PathEscapeCase[] } {
  return JSON.parse(readFileSync(join(CORPORA, 'path-escape.json'), 'utf8')) as { fixture: FsFixture; cases: PathEscapeCase[] };
}

/**
 * Builds the fixture under a fresh temp dir. "{{BASE}}" in symlink/hardlink targets is the temp dir.
 * Returns the base dir and the `--root NAME=DIR` flags. Device nodes need root; skipped otherwise.
 */
export function buildFsFixture(fx: FsFixture): { base: string; rootFlags: string[]; rootDirs: string[]; cleanup: () => void } {
  const base = mkdtempSync(join(tmpdir(), 'micro-mcp-fs-'));
  const at = (rel: string) => join(base, rel);
  const sub = (t: string) => t.replace('{{BASE}}', base);
  for (const [rel, content] of Object.entries(fx.files)) {
    mkdirSync(dirname(at(rel)), { recursive: true });
    writeFileSync(at(rel), content);
  }
  for (const [rel, target] of Object.entries(fx.symlinks)) {
    mkdirSync(dirname(at(rel)), { recursive: true });
    symlinkSync(sub(target), at(rel));
  }
  for (const [rel, target] of Object.entries(fx.hardlinks)) linkSync(sub(target), at(rel));
  for (const rel of fx.fifos) execFileSync('mkfifo', [at(rel)]);
  if (process.getuid?.() === 0) for (const rel of fx.devices) execFileSync('mknod', [at(rel), 'c', '1', '3']);
  const rootDirs = Object.values(fx.roots).map((r) => resolve(base, r));
  const rootFlags = Object.entries(fx.roots).flatMap(([name, dir]) => ['--root', `${name}=${resolve(base, dir)}`]);
  return { base, rootFlags, rootDirs, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

/** One SSRF corpus entry. */
export interface SsrfCase {
  id: string;
  arguments: { url: string; method?: 'GET' | 'HEAD' };
  why: string;
  /** Fake resolver answers this case needs (host -> successive answers; "a+b" = two addresses). */
  resolve?: Record<string, string>;
  /** "direct": refused by the checks alone. "redirect": the URL is first served by the loopback
   * redirector ({{REDIRECTOR}} = its origin), which answers 302 to `redirect_to`. */
  mode: 'direct' | 'redirect';
  redirect_to?: string;
  gateway: GatewayExpectation;
}

/** Loads test/corpora/ssrf.json (config flags shared by every case + the cases). */
export function loadSsrf(): { allow_hosts: string[]; allow_ports: number[]; cases: SsrfCase[] } {
  return JSON.parse(readFileSync(join(CORPORA, 'ssrf.json'), 'utf8')) as { allow_hosts: string[]; allow_ports: number[]; cases: SsrfCase[] };
}

/** The machine-readable facts of a tool error result (`_meta`, schemas/contracts/tool-error.ts); undefined for anything else. */
export function toolErrorOf(r: { isError?: unknown; _meta?: unknown; structuredContent?: unknown }): ToolErrorFacts | undefined {
  if (r.isError !== true) return undefined;
  // An error never carries structuredContent: clients validate it against the success-shaped outputSchema.
  if (r.structuredContent !== undefined) throw new Error(`a tool error carries structuredContent: ${JSON.stringify(r.structuredContent).slice(0, 200)}`);
  return (r._meta as Record<string, ToolErrorFacts> | undefined)?.[TOOL_ERROR_META_KEY];
}

/** Text of a tool result's first content block. */
export function resultText(r: { content?: unknown }): string {
  const c = (r.content as { type: string; text?: string }[] | undefined)?.[0];
  return c?.type === 'text' ? (c.text ?? '') : '';
}

/** A loopback HTTP test server that records every request it receives. */
export interface TestServer {
  port: number;
  origin: string;
  requests: string[];
  close(): Promise<void>;
}

/** Starts a loopback server on an ephemeral port; `handle` answers each request. */
export async function startTestServer(
  handle: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void,
): Promise<TestServer> {
  const { createServer } = await import('node:http');
  const requests: string[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.headers.host} ${req.url}`);
    handle(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The redirector the SSRF corpus's "redirect" cases need: /r -> 302 to `to`, /chain/N -> /chain/N-1. */
export function redirectorHandler(redirectTo: () => string) {
  return (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const m = /^\/chain\/(\d+)$/.exec(req.url ?? '');
    if (m) {
      const n = Number(m[1]);
      if (n === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('end of chain');
      else res.writeHead(302, { location: `/chain/${n - 1}` }).end();
      return;
    }
    if (req.url === '/r') {
      res.writeHead(302, { location: redirectTo() }).end();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  };
}
