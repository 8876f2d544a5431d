/**
 * The composition root shared by `serve` and `stdio`: builds every module from the config and wires
 * them together. It decides nothing and records nothing itself; each concern lives in its module.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { auditOptionsFromConfig, createLogger, openAuditLog, resultFilter } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import { Refusals } from '../audit/refusals.js';
import { authConfigOf, createMtlsFetch, createServiceCredentialMinter, createStateBinder } from '../auth/index.js';
import type { AuthConfig, Minter } from '../auth/index.js';
import { DEFAULT_DEV_KEY_DIR } from '../auth/config.js';
import { devStateKey, ensureDevKey } from '../auth/dev.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { memoryState } from '../state/memory.js';
import type { SharedState } from '../state/state.js';
import { CallPipeline } from '../pipeline/call-pipeline.js';
import { ResourceSubscriptions } from '../pipeline/subscriptions.js';
import { ConsentGate } from '../pipeline/consent.js';
import { InFlight } from '../pipeline/in-flight.js';
import { ListView } from '../pipeline/list-view.js';
import type { ProbePort, StatePort } from '../pipeline/ports.js';
import type { GatewayMetrics, MetricSources } from '../obs/metrics.js';
import { Observer } from '../obs/observer.js';
import { declaredFactNames, resourceExtractors } from '../policy/input.js';
import { loadPolicies } from '../policy/policy-set.js';
import type { Logger } from '../types.js';
import { Catalog, clashMessage, type NameClash } from '../upstream/catalog.js';
import { pinsFile, ToolPins } from '../upstream/pins.js';
import type { FetchLike } from '../upstream/connection.js';
import type { Lifecycle } from './lifecycle.js';

export const VERSION = '0.1.0';

export interface Core {
  log: Logger;
  audit: AuditLog;
  refusals: Refusals;
  minter: Minter;
  state: StatePort;
  catalog: Catalog;
  lists: ListView;
  calls: CallPipeline;
  /** Agents' resource subscriptions (decided, forwarded, updates delivered to who may read). */
  subscriptions: ResourceSubscriptions;
  inFlight: InFlight;
  probes: ProbePort;
  authConfig: AuthConfig;
  /** What replicas share (memory for one). */
  shared: SharedState;
  /** This replica's name (config `server.replica_id`, else random). */
  replicaId: string;
  /** Prometheus metrics (config `metrics`), and what they read at a scrape (serve adds the face's counts). */
  metrics: GatewayMetrics | undefined;
  metricSources: MetricSources;
}

/**
 * Everything but the listener, shared by `serve` and `stdio`. Each resource is acquired through the
 * lifecycle, which releases them (newest first) on a failed start, a signal or a stop: the audit
 * log last but one (it records the outcomes of calls still ending), the runtime folder last.
 */
export async function startCore(config: Config, opts: { dev: boolean; drainMs: number }, life: Lifecycle): Promise<Core> {
  const baseDir = path.dirname(config.source);
  const authConfig = resolveAuthPaths(config, baseDir);
  const replicaId = config.server.replica_id ?? `r${randomUUID().slice(0, 8)}`;
  if (config.runDir === null) throw new Error('startCore needs the runtime folder (loadConfig runDir)');
  // The configured services: an event names the service of a canonical tool name only for these.
  const auditOptions = { ...auditOptionsFromConfig(config.audit, { dev: opts.dev, baseDir, version: VERSION }), services: Object.keys(config.services) };
  const audit = await life.acquire('audit log', await openAuditLog(auditOptions), (a) => a.close({ drainMs: opts.drainMs }));
  const log: Logger = createLogger({ level: config.logging?.level ?? 'info', redact: audit.redactor });
  const clock = systemClock;
  // Read at a scrape only, when everything below exists.
  const metricSources: MetricSources = {
    sessions: () => 0,
    streams: () => 0,
    inFlight: () => inFlight.size,
    services: () => catalog.health(),
    policyRevision: () => policy.revision,
  };
  // prom-client and the OpenTelemetry SDK are loaded only when configured: together they hold
  // ~11 MiB of an idle gateway's RSS (measured: importing them into a bare node, +6 and +5.5 MiB).
  const metrics = config.metrics ? new (await import('../obs/metrics.js')).GatewayMetrics(metricSources) : undefined;
  const tracing = config.tracing
    ? await life.acquire('traces', new (await import('../obs/tracing.js')).Tracing(config.tracing, VERSION, log), (t) => t.close())
    : undefined;
  const observer = metrics || tracing ? new Observer(metrics, tracing) : undefined;
  if (metrics) audit.onWritten = (kind, seconds) => metrics.auditWritten(kind, seconds);
  const { burst, window_s } = config.audit.refusals;
  const refusals = await life.acquire(
    'refusal records',
    new Refusals(audit, log, {
      clock,
      burst,
      windowMs: window_s * 1000,
      ...(metrics ? { onLimitRefused: (limit: string) => metrics.limitRefused(limit) } : {}),
    }),
    (r) => r.close(),
  );
  const probes: ProbePort = {
    // A name that resolved is recorded canonical, with the agent's own beside it when they differ.
    refused: (cc, what) =>
      refusals.probeRefused(
        {
          requestId: cc.requestId,
          clientIp: cc.clientIp,
          principal: cc.principal,
          method: what.method,
          ...(what.canonical ? { tool: what.canonical } : what.tool ? { tool: what.tool } : {}),
          ...(what.canonical && what.tool && what.tool !== what.canonical ? { exposedName: what.tool } : {}),
          ...(what.service ? { service: what.service } : {}),
        },
        { code: what.code, message: what.message },
      ),
  };
  // The JWKS file stdio services read to verify their per-call credentials; private to this process.
  const jwksFile = path.join(config.runDir, 'service-jwks.json');
  const minter = await life.acquire(
    'service credential keys',
    await createServiceCredentialMinter({ ...(authConfig.service_credentials ?? {}), jwks_file: jwksFile }),
    (m) => m.close(),
  );
  const binder = await createStateBinder(authConfig.state_binding ?? {}, Date.now, await replicaStateKey(config, authConfig));
  const state: StatePort = { sign: (p, payload) => binder.signState(p, payload), verify: (p, t) => binder.verifyState(p, t) };
  // The policy set loads (compiling the engines' WASM) while the services start: neither needs the
  // other (measured on 2 cores with the compile cached: ~0.2 s and ~0.3 s; ~0.1 s saved together). A start that fails either way stops
  // both: the catalog is held by the lifecycle before it starts, the policy set as soon as it exists.
  const policyLoad = loadPolicies(config.policy, {
    baseDir,
    log,
    resourceFacts: declaredFactNames(config.services),
    onReload: (info) => void refusals.policyReloaded(info),
    ...(observer ? { onEvaluated: (engine, startMs, durationMs, error) => observer.engineEvaluated({ engine, startMs, durationMs, error }) } : {}),
    onReloadError: (e) => {
      metrics?.policyReloadFailed();
      log.error({ err: e.message }, 'policy reload failed; the last good policy set keeps running');
      void refusals.policyReloadRejected(e);
    },
  });
  const held = policyLoad.then((p) => life.acquire('policy engines', p, (q) => q.close()));
  // Handled here too: a start that fails before the await below reports its own error, not this one.
  held.catch(() => undefined);
  // Pins are read before any service is listed: a broken pin file stops the start (fail closed).
  const pins = new ToolPins(pinsFile(config), log, () => clock.now());
  const catalog = new Catalog(config, log, await serviceEnvironments(config, authConfig, minter), clock, pins);
  // Registered before it starts: a signal during the start still stops the processes it spawned.
  await life.acquire('service connections', catalog, (c) => c.stop());
  // The first failure fails the start at once; the lifecycle then stops whatever is still starting.
  const [policy] = await Promise.all([held, catalog.start()]);
  // Two services under one name (tool, prompt, resource URI): which one an agent reaches would depend
  // on the config order, so the gateway does not start. Clashes of services that come up later or
  // change their lists are withheld and audited (catalog `clash`).
  const [clash] = catalog.clashes();
  if (clash) throw new GatewayError('ERR_CONFIG_INVALID', clashMessage(clash), { key: `services.${clash.other.service}.expose` });
  catalog.on('clash', (c: NameClash) => {
    void audit
      .event({ type: 'name_clash', details: { kind: c.kind, name: c.name, service: c.other.service, canonical: c.other.canonical, holder: c.holder.service } })
      .catch((e: Error) => log.error({ err: e.message }, 'audit write of a name clash failed'));
  });
  const inFlight = new InFlight(clock);
  const shared = await life.acquire(
    'shared state',
    config.state.redis !== undefined
      ? // Loaded only when configured: ioredis costs ~85 ms and ~19 MiB at start (measured on 2 cores).
        await (await import('../state/redis.js')).redisState({
          ...{ url: config.state.redis, prefix: config.state.key_prefix, limits: config.limits, log },
          ...{ whenUnavailable: config.state.when_unavailable, clock, replicaId },
        })
      : memoryState(config.limits, clock),
    (s) => s.close(),
  );
  await life.acquire('published keys', publishKeys(shared, replicaId, minter, log), (stop) => stop());
  const limiter = shared.limiter;
  const lists = new ListView({ catalog, policy, state, probes, log, pageSize: config.server.page_size, clock });
  const resources = resourceExtractors(config.services);
  const calls = new CallPipeline({
    ...{ catalog, policy, audit, credentials: minter, state, probes, log, limiter, inFlight, clock, resources },
    filter: resultFilter(audit.redactor),
    consent: new ConsentGate({
      grants: shared.grants,
      clock,
      askTtlMs: config.consent.ask_ttl_s * 1000,
      grantTtlMs: config.consent.grant_ttl_s * 1000,
    }),
    outcomeBeforeAnswer: config.audit.outcome_before_answer,
    ...{ replicaId, peers: shared.peers },
    ...(observer ? { observer } : {}),
  });
  await life.acquire('parked input requests', calls.parked, (p) => p.clear());
  await life.acquire('parked prompt input requests', calls.parkedPrompts, (p) => p.clear());
  // Another replica's agent retry for a call parked here.
  await life.acquire(
    'requests from other replicas',
    shared.peers.serve((body) => calls.resumeForPeer(body)),
    (stop) => stop(),
  );
  const subscriptions = new ResourceSubscriptions({ calls, catalog, probes, log });
  return {
    subscriptions,
    log,
    audit,
    refusals,
    minter,
    state,
    catalog,
    lists,
    calls,
    inFlight,
    probes,
    authConfig,
    shared,
    replicaId,
    metrics,
    metricSources,
  };
}

/**
 * Keeps this replica's public signing keys in the shared state (a remote service verifies a credential
 * from any replica against any replica's JWKS document). Published at start and every 30 s with a
 * 90 s lifetime; the minter publishes its next key a whole rotation period before it signs with it.
 */
function publishKeys(shared: SharedState, replicaId: string, minter: Minter, log: Logger): () => void {
  if (shared.kind === 'memory') return () => undefined;
  const publish = () =>
    shared.keys
      .publish(replicaId, minter.jwks(), 90_000)
      .catch((e: Error) => log.warn({ err: e.message }, 'publishing the signing keys to the shared state failed'));
  void publish();
  const timer = setInterval(() => void publish(), 30_000);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * With shared state, state handed to agents (requestState, cursors) must verify on every replica: a
 * key file they share, or in dev mode a key derived from the dev key they share. A random key per
 * process would break the first retry that reaches another replica, so that is a config error.
 */
export async function replicaStateKey(config: Config, auth: AuthConfig): Promise<Buffer | undefined> {
  if (config.state.redis === undefined || auth.state_binding?.key_file) return undefined;
  if (auth.mode === 'dev') return devStateKey(await ensureDevKey(auth.dev_key_dir ?? DEFAULT_DEV_KEY_DIR));
  throw new GatewayError(
    'ERR_CONFIG_INVALID',
    'with state.redis, every replica must share auth.state_binding.key_file (state signed by one replica is verified by another)',
    {
      key: 'auth.state_binding.key_file',
    },
  );
}

/** The auth section with its dev key folder resolved against the config's folder. */
function resolveAuthPaths(config: Config, baseDir: string): AuthConfig {
  const auth = authConfigOf(config.auth);
  return auth.mode === 'dev' && auth.dev_key_dir && !path.isAbsolute(auth.dev_key_dir)
    ? { ...auth, dev_key_dir: path.resolve(baseDir, auth.dev_key_dir) }
    : auth;
}

/** What each service connection gets besides its config: credential env (stdio), mutual-TLS fetch (remote). */
async function serviceEnvironments(config: Config, auth: AuthConfig, minter: Minter) {
  const shared: FetchLike | undefined = auth.mtls ? await createMtlsFetch(auth.mtls) : undefined;
  const own = new Map<string, FetchLike>();
  for (const [name, s] of Object.entries(config.services)) {
    if (s.transport === 'http' && s.tls) own.set(name, await createMtlsFetch(s.tls));
  }
  return (name: string) => {
    const f = own.get(name) ?? shared;
    return { env: minter.serviceEnv(name), ...(f ? { fetch: f } : {}) };
  };
}
