/**
 * End-to-end harness: a real gateway process (dist/src/cli/main.js) on an ephemeral loopback port,
 * real child-process services, real SDK v2 clients over real HTTP, dev-key tokens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as StreamableHTTPClientTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ClientCapabilities as ClientCapabilitiesV1, JSONRPCMessage as JSONRPCMessageV1 } from '@modelcontextprotocol/sdk/types.js';
import { stringify } from 'yaml';
import { mintDevToken } from '../../src/auth/dev.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/ root of the compiled project (this file runs from dist/test/helpers). */
export const DIST = path.resolve(here, '..', '..');
export const ROOT = path.resolve(DIST, '..');
export const CLI = path.join(DIST, 'src', 'cli', 'main.js');
/** The `micro-mcp` command as installed (package.json bin): a gateway here runs the way users run it. */
export const LAUNCHER = path.join(ROOT, 'bin', 'micro-mcp');
export const FIXTURE = path.join(DIST, 'test', 'fixtures', 'echo-service.js');

export interface Gateway {
  url: string;
  mcpUrl: string;
  proc: ChildProcess;
  dir: string;
  output: () => string;
  token: (claims?: Partial<TokenClaims>) => Promise<string>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export interface TokenClaims {
  sub: string;
  groups: string[];
  scopes: string[];
  /** Bound into the token; default "e2e-tests"; '' for none. */
  purpose?: string;
  /** The purposes the token grants (its `purposes` claim); default none. */
  purposes?: string[];
  ttl: string;
}

/** The TMPDIR a test gateway runs with (created). */
function tmpOf(dir: string): string {
  const t = path.join(dir, 'tmp');
  mkdirSync(t, { recursive: true });
  return t;
}

/** The running gateway's private runtime folder (where the services' credential key set lives). */
export function runDirOf(gw: Gateway): string {
  const [entry] = readdirSync(tmpOf(gw.dir)).filter((n) => n.startsWith('micro-mcp-'));
  if (!entry) throw new Error('the gateway has no runtime folder');
  return path.join(tmpOf(gw.dir), entry);
}

/**
 * Two echo fixtures behind one gateway must not list the same resource URI (a clash stops start-up):
 * every echo service after the first that names none lists `echo://<service>/info` (and its template
 * under it). The first keeps the fixture's default, echo://static/info.
 */
function ownResourceUris(services: Record<string, Record<string, unknown>> | undefined): Record<string, Record<string, unknown>> | undefined {
  if (!services) return services;
  let first = true;
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, svc] of Object.entries(services)) {
    const args = Array.isArray(svc.args) ? (svc.args as unknown[]) : [];
    const echo = args.includes(FIXTURE) && !args.includes('--resource-uri');
    out[name] = echo && !first ? { ...svc, args: [...args, '--resource-uri', `echo://${name}/info`] } : svc;
    if (echo) first = false;
  }
  return out;
}

/** Starts `micro-mcp serve` with this config (YAML-able object); port 0, loopback, dev keys in a temp dir. */
export async function startGateway(config: Record<string, unknown>, opts: { env?: Record<string, string>; dir?: string } = {}): Promise<Gateway> {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'micro-mcp-e2e-'));
  const keyDir = path.join(dir, 'keys');
  const cfg = {
    ...config,
    services: ownResourceUris(config.services as Record<string, Record<string, unknown>> | undefined),
    server: { host: '127.0.0.1', port: 0, ...(config.server as object | undefined) },
    auth: { mode: 'dev', dev_key_dir: keyDir, ...(config.auth as object | undefined) },
    policy: {
      rego: { dir: path.join(ROOT, 'policies', 'rego') },
      cedar: { dir: path.join(ROOT, 'policies', 'cedar') },
      watch: false,
      // Tests run many processes on 2 cores; an after-the-fact engine timeout would deny at random.
      decision_timeout_ms: 5000,
      ...(config.policy as object | undefined),
    },
    audit: { file: path.join(dir, 'audit', 'audit.jsonl'), ...(config.audit as object | undefined) },
    // Load tests send many calls as one principal; tests of the limits set their own.
    limits: { calls_per_minute: 0, concurrent_per_principal: 0, ...(config.limits as object | undefined) },
  };
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(cfg));
  const proc = spawn(LAUNCHER, ['serve', '--config', file], {
    // Its own TMPDIR: the gateway's private runtime folder (mkdtemp) lands there, findable by runDirOf.
    env: { PATH: process.env.PATH ?? '', NODE: process.execPath, HOME: dir, TMPDIR: tmpOf(dir), ...(opts.env ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), 30_000);
    const check = () => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`gateway exited with ${code}:\n${out}`));
    });
  });
  const gw: Gateway = {
    url,
    mcpUrl: `${url}/mcp`,
    proc,
    dir,
    output: () => out,
    token: async (c = {}) =>
      mintDevToken({
        keyDir,
        sub: c.sub ?? 'alice',
        groups: c.groups ?? ['eng'],
        scopes: c.scopes ?? ['fs:read', 'http:fetch', 'echo:call', 'legacyecho:call', 'modernecho:call', 'everything:call'],
        ttl: c.ttl ?? '10m',
        audience: `${url}/mcp`,
        ...(c.purpose !== '' ? { purpose: c.purpose ?? 'e2e-tests' } : {}),
        ...(c.purposes ? { purposes: c.purposes } : {}),
      }),
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode !== null) return proc.exitCode;
      const done = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      proc.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([done, new Promise<null>((r) => (timer = setTimeout(() => r(null), 15_000)))]);
      clearTimeout(timer);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
  return gw;
}

export type Era = 'modern' | 'legacy';

/** A real SDK client pinned to 2026-07-28 ('modern') or speaking 2025-11-25 ('legacy'). */
export async function connect(gw: Gateway, era: Era, opts: { token?: string; capabilities?: Record<string, unknown> } = {}): Promise<Client> {
  const token = opts.token ?? (await gw.token());
  const client = new Client(
    { name: `e2e-${era}`, version: '1.0.0' },
    {
      capabilities: (opts.capabilities ?? { elicitation: { form: {} } }) as never,
      versionNegotiation: era === 'modern' ? { mode: { pin: '2026-07-28' } } : { mode: 'legacy' },
    },
  );
  const transport = new StreamableHTTPClientTransport(new URL(gw.mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

/**
 * A real SDK 1.x client (`@modelcontextprotocol/sdk`, 2025 era), the one most agents in the wild use.
 * It validates a tool result's structuredContent against the outputSchema it saw in tools/list.
 */
export async function connectV1(
  gw: Gateway,
  opts: { token?: string; capabilities?: ClientCapabilitiesV1; rewrite?: (m: JSONRPCMessageV1) => JSONRPCMessageV1 } = {},
): Promise<ClientV1> {
  const token = opts.token ?? (await gw.token());
  const client = new ClientV1({ name: 'e2e-sdk1', version: '1.0.0' }, { capabilities: opts.capabilities ?? { elicitation: { form: {} } } });
  const transport = new StreamableHTTPClientTransportV1(new URL(gw.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
  const { rewrite } = opts;
  if (rewrite) {
    // What the agent sends passes through `rewrite` after the client's own checks, as a broken or hostile agent's code would send it.
    const send = transport.send.bind(transport);
    transport.send = (m, o) => send(Array.isArray(m) ? m.map(rewrite) : rewrite(m), o);
  }
  await client.connect(transport);
  return client;
}

/**
 * The gateway config for the echo fixture service (plus any others). It runs in the default OS
 * sandbox, which is read-only; with a marker file (which it writes) it says `sandbox: {mode: none}`.
 * Every echo service but one behind a gateway needs its own `resourceUri` (a shared URI stops start-up).
 */
export function echoService(extra: Record<string, unknown> = {}, markerFile?: string, resourceUri?: string): Record<string, unknown> {
  return {
    transport: 'stdio',
    command: 'node',
    args: [FIXTURE, ...(markerFile ? ['--marker', markerFile] : []), ...(resourceUri ? ['--resource-uri', resourceUri] : [])],
    ...(markerFile ? { sandbox: { mode: 'none' } } : {}),
    ...extra,
  };
}

/**
 * The echo fixture over Streamable HTTP on an ephemeral port, as a remote service: 2026-07-28 only with
 * `modernOnly`, its resource under `uri`, its "started/cancelled TAG" lines into `marker`, plus `args`.
 */
export async function startHttpFixture(
  opts: { modernOnly?: boolean; uri?: string; marker?: string; args?: string[] } = {},
): Promise<{ proc: ChildProcess; url: string }> {
  const args = [
    FIXTURE,
    '--http-port',
    '0',
    ...(opts.modernOnly ? ['--modern-only'] : []),
    ...(opts.uri ? ['--resource-uri', opts.uri] : []),
    ...(opts.marker ? ['--marker', opts.marker] : []),
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`fixture exited with ${code}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}/mcp` };
}

/** Resolves when `n` agents have arrived: each waits for the rest, so all their calls are in flight at once. */
export function barrier(n: number): { arrive: () => Promise<void> } {
  let count = 0;
  let open!: () => void;
  const all = new Promise<void>((r) => (open = r));
  return {
    arrive: () => {
      if (++count === n) open();
      return all;
    },
  };
}

/**
 * `n` agents of different principals (`<tag>-<i>`), of three kinds in turn (2.x 2026-07-28, 2.x 2025
 * session, 1.x), each with scope `<service>:call`, answering the eliciting `<service>.ask-name` with its
 * own name once all `n` are asked (so every call is in flight at once). `asked` lists the questions each
 * saw; `call` makes the call. Clients go into `clients` for the caller to close.
 */
export async function elicitingAgents(
  gw: Gateway,
  n: number,
  tag: string,
  service: string,
  clients: Array<{ close(): Promise<void> }>,
): Promise<Array<{ sub: string; asked: string[]; call: () => Promise<object> }>> {
  const gate = barrier(n);
  const { ElicitRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const sub = `${tag}-${i}`;
      const token = await gw.token({ sub, scopes: [`${service}:call`] });
      const asked: string[] = [];
      const answer = async (message: string) => {
        asked.push(message);
        await gate.arrive();
        return { action: 'accept' as const, content: { name: sub } };
      };
      const params = { name: `${service}.ask-name`, arguments: {} };
      if (i % 3 === 2) {
        const c = await connectV1(gw, { token });
        clients.push(c);
        c.setRequestHandler(ElicitRequestSchema, (req) => answer(req.params.message));
        return { sub, asked, call: () => c.callTool(params) };
      }
      const c = await connect(gw, i % 3 === 0 ? 'modern' : 'legacy', { token });
      clients.push(c);
      c.setRequestHandler('elicitation/create', (req) => answer((req.params as { message: string }).message));
      return { sub, asked, call: () => c.callTool(params) };
    }),
  );
}

/** Resolves once /readyz lists every service of the gateway as ready (remote ones connect after start-up). */
export async function allReady(gw: Gateway, ms = 30_000): Promise<void> {
  await eventually(async () => {
    const r = (await (await fetch(`${gw.url}/readyz`)).json()) as { services?: Array<{ state: string }> };
    return r.services?.every((s) => s.state === 'ready') ?? false;
  }, ms);
}

export async function rawPost(gw: Gateway, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(gw.mcpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body,
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` returns a truthy value or `ms` pass. */
export async function eventually<T>(fn: () => T | Promise<T>, ms = 10_000, step = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(step);
  }
}

/** The per-request `_meta` envelope a 2026-07-28 client sends. */
export function modernEnvelope(capabilities: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
    'io.modelcontextprotocol/clientCapabilities': capabilities,
  };
}

/**
 * One raw 2026-07-28 request (envelope, Mcp-Method / Mcp-Name headers), for tests that must see the
 * wire: returns every JSON-RPC message of the answer, in order, whether it came as JSON or as SSE.
 */
export async function modernPost(
  gw: Gateway,
  token: string,
  method: string,
  params: Record<string, unknown> = {},
  opts: { capabilities?: Record<string, unknown>; meta?: Record<string, unknown> } = {},
): Promise<Array<Record<string, any>>> {
  const name: Record<string, string> = typeof params.name === 'string' ? { 'mcp-name': params.name } : {};
  const r = await rawPost(
    gw,
    JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { ...modernEnvelope(opts.capabilities), ...opts.meta } } }),
    { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': method, ...name },
  );
  const body = await r.text();
  if (!(r.headers.get('content-type') ?? '').includes('text/event-stream')) return [JSON.parse(body) as Record<string, any>];
  return body
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)) as Record<string, any>);
}
