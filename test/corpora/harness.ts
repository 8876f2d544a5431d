/**
 * Test harness for the services and their attack corpora, reusable by the gateway's tests:
 * starts a service as a real child process (optionally under Node's permission model) and connects
 * a real SDK v2 Client over stdio; loads the corpora; builds the fs fixture tree.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, linkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

/** The repository root (works from test/corpora and from dist/test/corpora). */
export const REPO = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) d = dirname(d);
  return d;
})();

/** The corpora directory in the source tree (JSON files are not compiled). */
export const CORPORA = join(REPO, 'test', 'corpora');

/** A running service with a connected client. */
export interface RunningService {
  client: Client;
  /** Everything the service wrote to stderr so far. */
  stderr(): string;
  close(): Promise<void>;
}

/** The `--allow-fs-read` flags a service needs for its own code (see services/README.md). */
export function codeReadFlags(): string[] {
  return [join(REPO, 'dist', 'services'), join(REPO, 'node_modules'), join(REPO, 'package.json')].map((p) => `--allow-fs-read=${p}`);
}

/** Starts dist/services/<name>/main.js as a child process and connects a Client over stdio. */
export async function startService(name: 'fs' | 'http', args: string[], opts: { sandboxRead?: string[]; env?: Record<string, string>; era?: 'legacy' | 'modern' } = {}): Promise<RunningService> {
  const nodeFlags = opts.sandboxRead ? ['--experimental-permission', ...codeReadFlags(), ...opts.sandboxRead.map((p) => `--allow-fs-read=${p}`)] : [];
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [...nodeFlags, '--no-warnings', join(REPO, 'dist', 'services', name, 'main.js'), ...args, ...(opts.sandboxRead ? [] : ['--no-sandbox-check'])],
    env: { PATH: process.env['PATH'] ?? '', ...opts.env },
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
    stderr: () => err,
    close: async () => {
      await client.close();
    },
  };
}

/** One path-escape corpus entry. */
export interface PathEscapeCase {
  id: string;
  tool: 'read' | 'list' | 'stat' | 'search';
  arguments: Record<string, unknown>;
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
}

/** Loads test/corpora/ssrf.json (config flags shared by every case + the cases). */
export function loadSsrf(): { allow_hosts: string[]; allow_ports: number[]; cases: SsrfCase[] } {
  return JSON.parse(readFileSync(join(CORPORA, 'ssrf.json'), 'utf8')) as { allow_hosts: string[]; allow_ports: number[]; cases: SsrfCase[] };
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
export async function startTestServer(handle: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<TestServer> {
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
