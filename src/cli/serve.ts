/**
 * `micro-mcp serve`: the hosted Streamable HTTP endpoint. Wires the core (core.ts), the
 * authenticator, the MCP face and the HTTP app together, listens, and shuts down cleanly (SIGTERM
 * drains in-flight calls and flushes the audit).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getRequestListener } from '@hono/node-server';
import { DEFAULT_DEV_KEY_DIR } from '../auth/config.js';
import { DEV_AUTHORIZATION_DEFAULTS, DevAuthorizationServer } from '../auth/dev-authorization.js';
import { ensureDevKey } from '../auth/dev.js';
import { createAuthenticator } from '../auth/index.js';
import { systemClock } from '../clock.js';
import { DEV_CONFIG_PATH, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { installResponseJson } from '../http/response-json.js';
import { createApp } from '../http/app.js';
import { limitConnections } from '../http/connections.js';
import { Holdings, KeyedRate } from '../limits/keyed.js';
import { McpFace } from '../mcp-face/face.js';
import type { ChangeKind } from '../upstream/catalog.js';
import { startMetricsListener } from '../obs/metrics-listener.js';
import { startCore } from './core.js';
import { Lifecycle, StopRequested } from './lifecycle.js';
import { printDevHelp } from './dev-help.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]', '::1'];

/** The flags `serve` and `stdio` share. */
export function parseCommon(argv: string[]) {
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

/** `micro-mcp serve`. Returns -1: the process keeps running (a signal stops it through the lifecycle). */
export async function serveCommand(argv: string[]): Promise<number> {
  const v = parseCommon(argv);
  if (v.help) {
    process.stdout.write('usage: micro-mcp serve [--config FILE | --dev] [--host H] [--port N]\n');
    return 0;
  }
  // Signal handlers first: from here on a SIGTERM stops whatever has started, and nothing leaks.
  const life = new Lifecycle({ onSignalStopped: () => process.exit(0), report: (line) => process.stderr.write(`${line}\n`) });
  try {
    const runDir = await life.acquire('runtime folder', makeRunDir(), (d) => rmSync(d, { recursive: true, force: true }));
    const config = loadConfig(resolveConfigPath(v), { runDir });
    const host = v.host ?? config.server.host;
    const port = v.port !== undefined ? Number(v.port) : config.server.port;
    const dev = v.dev || config.auth.mode === 'dev';
    await startGateway(config, { host, port, dev }, life);
  } catch (e) {
    await life.stop('start-up failed');
    if (e instanceof StopRequested) return -1; // the signal handler exits once the stop is done
    throw e;
  }
  return -1;
}

/** This process's private runtime folder: a fresh, unpredictable name, mode 0700 (mkdtemp). */
export function makeRunDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'micro-mcp-'));
}

/**
 * Starts the HTTP gateway on `life` and prints where it listens (and, in dev mode, how to connect).
 * "listening" is printed only once everything is serving; stopping `life` stops it all.
 */
export async function startGateway(config: Config, opts: { host: string; port: number; dev: boolean }, life: Lifecycle): Promise<void> {
  const loopback = LOOPBACK.has(opts.host) || /^127\./.test(opts.host);
  if (config.auth.mode === 'dev' && !loopback) {
    // Refused before anything listens: the dev key must never guard a network-reachable endpoint.
    throw new GatewayError(
      'ERR_CONFIG_INVALID',
      `auth.mode "dev" is allowed only on a loopback address, not ${opts.host}; configure auth.mode "jwt" with your issuer`,
    );
  }
  // Listen first: with port 0 the canonical resource URI (the token audience) needs the real port.
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  // Header and request timeouts are enforced by a periodic sweep (Node's default: every 30 s); once
  // a second keeps them close to what the config says.
  const server = createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
    if (handler) handler(req, res);
    else {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end('{"error":"starting"}');
    }
  });
  const sc = config.server;
  // Slow clients: headers and the whole request (not the response: SSE streams are long-lived) must
  // arrive in time; idle keep-alive connections close.
  server.headersTimeout = sc.headers_timeout_ms;
  server.requestTimeout = sc.request_timeout_ms;
  server.keepAliveTimeout = sc.keep_alive_timeout_ms;
  // Reported once the audit is open (refusals before that are only counted by the kernel's backlog).
  let onConnectionRefused: (ip: string, limit: string) => void = () => undefined;
  limitConnections(server, new Holdings(sc.max_connections_per_ip, sc.max_connections), (ip, limit) => onConnectionRefused(ip, limit));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  await life.acquire('listener', server, (s) => {
    s.close();
    s.closeAllConnections();
  });
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const base = (config.server.public_url ?? `http://${hostForUrl}:${addr.port}`).replace(/\/+$/, '');
  const grace = config.server.shutdown_grace_ms;
  const core = await startCore(config, { dev: opts.dev, drainMs: grace }, life);
  // Dev mode's own authorization server (never with a real issuer: the schema refuses the section in jwt mode).
  const authConfig = core.authConfig;
  const devAs = authConfig.mode === 'dev' && loopback && authConfig.dev_authorization?.enabled !== false ? (authConfig.dev_authorization ?? {}) : undefined;
  const auth = await createAuthenticator(
    devAs && authConfig.authorization_servers === undefined ? { ...authConfig, authorization_servers: [base] } : authConfig,
    {
      resource: `${base}/mcp`,
      loopback,
      // Several replicas share the single-use jti memory; one keeps it in memory (bounded).
      ...(core.shared.kind === 'redis' ? { replay: core.shared.replay } : {}),
    },
  );
  const { log, audit, catalog, lists, calls, inFlight } = core;
  const devAuthorization =
    devAs && authConfig.mode === 'dev'
      ? new DevAuthorizationServer(
          base,
          `${base}/mcp`,
          auth.issuer,
          await ensureDevKey(authConfig.dev_key_dir ?? DEFAULT_DEV_KEY_DIR),
          {
            subject: devAs.subject ?? DEV_AUTHORIZATION_DEFAULTS.subject,
            groups: devAs.groups ?? DEV_AUTHORIZATION_DEFAULTS.groups,
            scopes: devAs.scopes ?? DEV_AUTHORIZATION_DEFAULTS.scopes,
            tokenTtlS: devAs.token_ttl_s ?? DEV_AUTHORIZATION_DEFAULTS.tokenTtlS,
          },
          systemClock,
        )
      : undefined;
  const publicHost = new URL(base).hostname.replace(/^\[|\]$/g, '');
  const face = await life.acquire(
    'MCP face',
    new McpFace(
      { calls, lists, state: core.state, probes: core.probes, subscriptions: core.subscriptions },
      {
        maxBodyBytes: config.server.max_body_bytes,
        sessionIdleMs: config.server.session_idle_timeout_s * 1000,
        maxSessions: sc.max_sessions,
        maxSessionsPerPrincipal: sc.max_sessions_per_principal,
        maxStreamsPerPrincipal: sc.max_streams_per_principal,
        maxStreams: sc.max_streams,
        replicaId: core.replicaId,
        log,
        clock: systemClock,
        ...(core.metrics ? { onLimited: (limit: string) => core.metrics?.limitRefused(limit) } : {}),
      },
    ),
    (f) => f.close(),
  );
  // A list change tells this replica's agents and, through the shared state's event bus, every other
  // replica's (which also lists the service again); memory state has no other replica to tell.
  catalog.on('listChanged', (kind: ChangeKind, service: string) => {
    face.listChanged(kind);
    core.shared.events.publish({ type: 'list_changed', service, kind });
  });
  // A service's resource update: this replica's subscribers are told by core.subscriptions; the others' through the bus.
  catalog.on('resourceUpdated', (service: string, uri: string) => core.shared.events.publish({ type: 'resource_updated', service, uri }));
  await life.acquire(
    'event bus subscription',
    core.shared.events.subscribe((e) => {
      if (e.type === 'resource_updated') return core.subscriptions.updated(e.service, e.uri);
      face.listChanged(e.kind);
      void catalog.peerChanged(e.service, e.kind);
    }),
    (unsubscribe) => unsubscribe(),
  );
  core.metricSources.sessions = () => face.sessionCount;
  core.metricSources.streams = () => face.streamCount;
  if (core.metrics && config.metrics) {
    // Its own listener, off the agent port: a scraper needs no agent token, an agent never sees it.
    const m = await life.acquire(
      'metrics listener',
      await startMetricsListener({
        listen: config.metrics.listen,
        tokenFile: config.metrics.token_file === undefined ? undefined : path.resolve(path.dirname(config.source), config.metrics.token_file),
        metrics: core.metrics,
        log,
      }),
      (l) => l.close(),
    );
    process.stdout.write(`micro-mcp metrics on ${m.url}\n`);
  }
  onConnectionRefused = (ip, limit) => void core.refusals.limitRefused(limit, { requestId: 'connection', clientIp: ip });
  const app = createApp({
    face,
    limits: {
      verifying: new Holdings(sc.max_unauthenticated_in_flight),
      authFailures: new KeyedRate(sc.auth_failures_per_minute_per_ip, Math.max(1, sc.auth_failures_per_minute_per_ip), systemClock),
      bodies: new Holdings(sc.max_bodies_in_flight_per_ip),
    },
    auth,
    refusals: core.refusals,
    scopesToLift: (principal, tool, requestId) => lists.stepUpScopes(principal, tool, requestId),
    canonicalTool: (tool) => catalog.tool(tool)?.canonical,
    ...(devAuthorization ? { devAuthorization } : {}),
    log,
    maxBodyBytes: config.server.max_body_bytes,
    allowedHosts: config.server.allowed_hosts ?? (loopback ? LOOPBACK_NAMES : [publicHost]),
    allowedOrigins: config.server.allowed_origins ?? (loopback ? LOOPBACK_NAMES : [publicHost]),
    // URL.origin: lower-case host, no default port, exactly as a browser sends Origin.
    ...(sc.cors ? { cors: { origins: sc.cors.origins.map((o) => new URL(o).origin), maxAgeS: sc.cors.max_age_s } } : {}),
    trustedProxies: sc.trusted_proxies,
    // Every replica's keys: a remote service may verify a credential any replica minted against this one.
    jwks: () => core.shared.keys.all(core.minter.jwks()),
    health: () => {
      const services = catalog.health();
      const stateUp = core.shared.healthy();
      // Each replica limiting on its own while Redis is down is degraded, not down.
      const stateOk = stateUp || core.shared.degradedMode === 'local';
      return {
        ready: services.some((s) => s.state === 'ready') && audit.healthy && stateOk,
        detail: {
          replica: core.replicaId,
          services,
          audit: audit.healthy ? 'ok' : 'unavailable',
          state: { kind: core.shared.kind, status: stateUp ? 'ok' : stateOk ? 'degraded' : 'unavailable' },
          sessions: face.sessionCount,
          streams: face.streamCount,
          in_flight: inFlight.size,
        },
      };
    },
  });
  // Serving is the last thing acquired, so it is the first released: stop taking requests, then
  // let the calls in flight finish (up to the grace period) before anything they need goes away.
  handler = await life.acquire('serving', getRequestListener(app.fetch), async () => {
    server.close();
    await inFlight.drain(grace);
  });
  // getRequestListener has installed its lightweight Response as the global one: give it a json().
  installResponseJson();
  process.stdout.write(`micro-mcp listening on ${base}/mcp\n`);
  if (opts.dev) printDevHelp(base, config);
  log.info({ url: `${base}/mcp`, services: catalog.health().map((s) => `${s.name}:${s.state}`) }, 'gateway started');
}
