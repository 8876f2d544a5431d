/**
 * `micro-mcp serve` and `micro-mcp stdio`: wire config, identity, policy, audit, catalog and the MCP
 * face together, start, and shut down cleanly (SIGTERM drains in-flight calls and flushes the audit).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { ServerContext } from '@modelcontextprotocol/server';
import { randomUUID } from 'node:crypto';
import { createAuthenticator, createMtlsFetch, createServiceCredentialMinter, createStateBinder, CREDENTIAL_META_KEY } from '../auth/index.js';
import type { AuthConfig, Authenticator, Minter } from '../auth/index.js';
import { auditOptionsFromConfig, createLogger, openAuditLog } from '../audit/index.js';
import type { AuditConfig, AuditLog } from '../audit/index.js';
import { Catalog } from '../catalog/catalog.js';
import { DEV_CONFIG_PATH, loadConfig, RUN_DIR } from '../config/load.js';
import type { Config } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { McpFront } from '../front/front.js';
import { Gateway } from '../front/gateway.js';
import type { StatePort } from '../front/ports.js';
import { buildServer } from '../front/server.js';
import { createApp } from '../http/app.js';
import { loadPolicies } from '../policy/policy-set.js';
import { Limiter, LIMITS_DEFAULTS } from '../limits/limiter.js';
import type { PolicyConfig } from '../policy/types.js';
import type { Logger, Principal } from '../types.js';

const VERSION = '0.1.0';
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]', '::1'];

export interface RunningGateway {
  url: string;
  close(): Promise<void>;
}

interface Core {
  log: Logger;
  minter: Minter;
  audit: AuditLog;
  catalog: Catalog;
  gateway: Gateway;
  state: StatePort;
  stop(): Promise<void>;
}

function parseCommon(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      dev: { type: 'boolean', default: false },
      host: { type: 'string' },
      port: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}

/** The config file: --config, else the embedded dev config with --dev (what `make run` uses). */
export function resolveConfigPath(v: { config?: string | undefined; dev?: boolean | undefined }): string {
  if (v.config) return v.config;
  if (v.dev) return DEV_CONFIG_PATH;
  throw new GatewayError('ERR_CONFIG_INVALID', 'no config: pass --config FILE (or --dev for the embedded development config)');
}

/** Everything but the HTTP listener: shared by `serve` and `stdio`. */
async function startCore(config: Config, opts: { dev: boolean }): Promise<Core & { authConfig: AuthConfig }> {
  const baseDir = path.dirname(config.source);
  const authCfg = config.auth as unknown as AuthConfig | undefined;
  if (!authCfg) throw new GatewayError('ERR_CONFIG_INVALID', `${config.source}: /auth: the auth section is required (mode: dev or jwt)`);
  const resolvedAuth: AuthConfig =
    authCfg.dev_key_dir && !path.isAbsolute(authCfg.dev_key_dir) ? { ...authCfg, dev_key_dir: path.resolve(baseDir, authCfg.dev_key_dir) } : authCfg;
  const audit = await openAuditLog(auditOptionsFromConfig(config.audit as AuditConfig | undefined, { dev: opts.dev, baseDir, version: VERSION }));
  const log = createLogger({ level: config.logging?.level ?? 'info', redact: audit.redactor }) as unknown as Logger;
  // The JWKS file stdio services read to verify their per-call credentials; private to this process.
  const runDir = RUN_DIR;
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const minter = await createServiceCredentialMinter({ ...(resolvedAuth.service_credentials ?? {}), jwks_file: path.join(runDir, 'service-jwks.json') });
  const binder = await createStateBinder(resolvedAuth.state_binding ?? {});
  const state: StatePort = { sign: (p, payload) => binder.signState(p, payload), verify: (p, t) => binder.verifyState(p, t) };
  const policy = await loadPolicies(config.policy as PolicyConfig | undefined, {
    baseDir,
    log: log as never,
    onReload: (info) => {
      log.info(info, 'policy reloaded');
      void audit.event({ type: 'policy_reload', details: info }).catch(() => undefined);
    },
    onReloadError: (e) => {
      log.error({ err: e.message }, 'policy reload failed; the last good policy set keeps running');
      void audit.event({ type: 'policy_reload', error: { code: e.code, message: e.message }, details: { ok: false } }).catch(() => undefined);
    },
  });
  const mtls = resolvedAuth.mtls ? await createMtlsFetch(resolvedAuth.mtls) : undefined;
  const perService = new Map<string, Awaited<ReturnType<typeof createMtlsFetch>>>();
  for (const [name, s] of Object.entries(config.services)) {
    if (s.transport === 'http' && s.tls && (s.tls.cert_file || s.tls.ca_file)) {
      perService.set(name, await createMtlsFetch({ ...s.tls } as never));
    }
  }
  const catalog = new Catalog(config, log, (name) => {
    const f = perService.get(name) ?? mtls;
    return { env: minter.serviceEnv(name), credentialMetaKey: CREDENTIAL_META_KEY, ...(f ? { fetch: f } : {}) };
  });
  await catalog.start();
  const limiter = new Limiter({ ...LIMITS_DEFAULTS, ...config.limits });
  const gateway = new Gateway({ catalog, policy, audit, credentials: minter, state, log, limiter, pageSize: config.server.page_size });
  return {
    log,
    minter,
    audit,
    authConfig: resolvedAuth,
    catalog,
    gateway,
    state,
    async stop() {
      await catalog.stop();
      gateway.parked.clear();
      policy.close();
      minter.close();
      rmSync(runDir, { recursive: true, force: true });
    },
  };
}

/** `micro-mcp serve`: the hosted Streamable HTTP endpoint. Returns -1: the process keeps running. */
export async function serveCommand(argv: string[]): Promise<number> {
  const v = parseCommon(argv);
  if (v.help) {
    process.stdout.write('usage: micro-mcp serve [--config FILE | --dev] [--host H] [--port N]\n');
    return 0;
  }
  const config = loadConfig(resolveConfigPath(v));
  const host = v.host ?? config.server.host;
  const port = v.port !== undefined ? Number(v.port) : config.server.port;
  const dev = v.dev || config.auth?.mode === 'dev';
  const gw = await startGateway(config, { host, port, dev });
  const stop = async (signal: string) => {
    process.stderr.write(`micro-mcp: ${signal}: draining in-flight calls and flushing the audit log\n`);
    await gw.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  return -1;
}

/** Starts the HTTP gateway and prints where it listens (and, in dev mode, how to connect). */
export async function startGateway(config: Config, opts: { host: string; port: number; dev: boolean }): Promise<RunningGateway> {
  const loopback = LOOPBACK.has(opts.host) || /^127\./.test(opts.host);
  if (config.auth?.mode === 'dev' && !loopback) {
    // Refused before anything listens: the dev key must never guard a network-reachable endpoint.
    throw new GatewayError('ERR_CONFIG_INVALID', `auth.mode "dev" is allowed only on a loopback address, not ${opts.host}; configure auth.mode "jwt" with your issuer`);
  }
  // Listen first: with port 0 the canonical resource URI (the token audience) needs the real port.
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handler) handler(req, res);
    else {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end('{"error":"starting"}');
    }
  });
  server.requestTimeout = 0; // SSE streams are long-lived; body reads are capped by size instead
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const base = (config.server.public_url ?? `http://${hostForUrl}:${addr.port}`).replace(/\/+$/, '');
  const resource = `${base}/mcp`;
  let core: Awaited<ReturnType<typeof startCore>>;
  let auth: Authenticator;
  try {
    core = await startCore(config, { dev: opts.dev });
  } catch (e) {
    server.close();
    throw e;
  }
  try {
    auth = await createAuthenticator(core.authConfig, { resource, loopback });
  } catch (e) {
    server.close();
    await core.stop();
    throw e;
  }
  const { log, audit, catalog, gateway } = core;
  const publicHost = new URL(base).hostname.replace(/^\[|\]$/g, '');
  const allowedHosts = config.server.allowed_hosts ?? (loopback ? LOOPBACK_NAMES : [publicHost]);
  const allowedOrigins = config.server.allowed_origins ?? (loopback ? LOOPBACK_NAMES : [publicHost]);
  const front = new McpFront(gateway, core.state, {
    maxBodyBytes: config.server.max_body_bytes,
    sessionIdleMs: config.server.session_idle_timeout_s * 1000,
    maxSessions: config.server.max_sessions,
    log,
  });
  catalog.on('listChanged', (kind) => front.listChanged(kind));
  const app = createApp({
    front,
    auth: {
      authenticate: (h) => auth.authenticate(h),
      challenge: (e) => auth.challenge(e),
      metadata: () => auth.protectedResourceMetadata() as unknown as Record<string, unknown>,
      onRefused: async (e, f) => {
        try {
          await audit.event({
            type: 'auth_failure',
            request_id: f.requestId,
            requested_by: f.clientIp,
            error: { code: e.code, message: e.message },
            ...(f.principal ? { principal: { id: f.principal.id, type: f.principal.type, issuer: f.principal.issuer }, client: f.principal.client } : {}),
            ...(f.method ? { method: f.method } : {}),
            ...(f.tool ? { tool: f.tool } : {}),
          });
        } catch (err) {
          log.error({ err: (err as Error).message, request_id: f.requestId }, 'audit event write failed');
        }
      },
    },
    log,
    maxBodyBytes: config.server.max_body_bytes,
    allowedHosts,
    allowedOrigins,
    jwks: () => core.minter.jwks() as unknown as Record<string, unknown>,
    health: () => {
      const services = catalog.health();
      const anyReady = services.some((s) => s.state === 'ready');
      return {
        ready: anyReady && audit.healthy,
        detail: { services, audit: audit.healthy ? 'ok' : 'unavailable', sessions: front.sessionCount, in_flight: gateway.inFlight },
      };
    },
    onLimitRefused: async (limit, f) => {
      try {
        await audit.event({ type: 'limit_refused', request_id: f.requestId, requested_by: f.clientIp, details: { limit } });
      } catch (err) {
        log.error({ err: (err as Error).message, request_id: f.requestId }, 'audit event write failed');
      }
    },
    stepUp: (principal, body, requestId) => gateway.stepUpScopes(principal, body, requestId),
    clientIp: (c) => ((c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket.remoteAddress ?? null),
  });
  handler = getRequestListener(app.fetch);
  const url = base;
  process.stdout.write(`micro-mcp listening on ${url}/mcp\n`);
  if (opts.dev) printDevHelp(url, config);
  log.info({ url: `${url}/mcp`, services: catalog.health().map((s) => `${s.name}:${s.state}`) }, 'gateway started');

  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= (async () => {
        server.close();
        await gateway.drain(config.server.shutdown_grace_ms);
        await audit.close({ drainMs: config.server.shutdown_grace_ms }).catch(() => undefined);
        await front.close();
        await core.stop();
        server.closeAllConnections();
      })()),
  };
}

function printDevHelp(url: string, config: Config): void {
  const services = Object.keys(config.services).join(', ');
  process.stdout.write(
    [
      '',
      'DEVELOPMENT MODE: loopback only, tokens signed by the local dev key in .dev/keys (never use this on a network).',
      `Services: ${services}`,
      '',
      'Mint a token and connect an MCP client:',
      `  TOKEN=$(node dist/src/cli/main.js token --sub alice --groups eng --scopes "fs:read http:fetch" --ttl 15m --aud ${url}/mcp)`,
      `  npx @modelcontextprotocol/inspector --transport http --server-url ${url}/mcp --header "Authorization: Bearer $TOKEN"`,
      '',
      'Or by hand:',
      `  curl -s ${url}/mcp -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
      `       -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/list' \\`,
      `       -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}'`,
      '',
    ].join('\n'),
  );
}

/** `micro-mcp stdio`: the same catalog for one local client over stdin/stdout. */
export async function stdioCommand(argv: string[]): Promise<number> {
  const v = parseCommon(argv);
  const config = loadConfig(resolveConfigPath(v));
  const stdioCfg = (config as unknown as { stdio?: { principal?: Partial<Principal> & { id?: string }; audit_file?: string } }).stdio;
  const p = stdioCfg?.principal ?? {};
  const principal: Principal = Object.freeze({
    id: p.id ?? `local:${process.env.USER ?? 'user'}`,
    type: p.type ?? 'user',
    issuer: 'urn:micro-mcp:local',
    groups: p.groups ?? [],
    attributes: p.attributes ?? {},
    scopes: p.scopes ?? [],
    client: { id: 'stdio' },
    purpose: p.purpose ?? null,
  });
  // No HTTP and no tokens on stdio: the one local client acts as the configured principal.
  const own = stdioCfg?.audit_file ? { ...config, audit: { ...(config.audit ?? {}), file: stdioCfg.audit_file } } : config;
  const core = await startCore(own, { dev: true });
  const servers = new Set<ReturnType<typeof buildServer>>();
  const factory = ({ era }: { era: 'legacy' | 'modern' }) => {
    const server = buildServer(core.gateway, core.state, {
      era,
      principalOf: () => principal,
      sessionId: () => null,
      requestIdOf: (ctx: ServerContext) => `stdio-${String(ctx.mcpReq.id)}-${randomUUID().slice(0, 8)}`,
      clientIpOf: () => null,
    });
    servers.add(server);
    return server;
  };
  const handle = serveStdio(factory);
  // A 2025-era stdio client hears list changes as notifications on its connection.
  core.catalog.on('listChanged', (kind: string) => {
    for (const s of servers) {
      const sent = kind === 'tools' ? s.sendToolListChanged() : kind === 'prompts' ? s.sendPromptListChanged() : s.sendResourceListChanged();
      void Promise.resolve(sent).catch(() => undefined);
    }
  });
  const stop = async () => {
    await handle.close().catch(() => undefined);
    await core.audit.close().catch(() => undefined);
    await core.stop();
    process.exit(0);
  };
  process.stdin.once('end', () => void stop());
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  return -1;
}
