/**
 * The composition root shared by `serve` and `stdio`: builds every module from the config and wires
 * them together. It decides nothing and records nothing itself; each concern lives in its module.
 */
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { auditOptionsFromConfig, createLogger, openAuditLog } from '../audit/index.js';
import type { AuditLog } from '../audit/index.js';
import { Refusals } from '../audit/refusals.js';
import { authConfigOf, createMtlsFetch, createServiceCredentialMinter, createStateBinder } from '../auth/index.js';
import type { AuthConfig, Minter } from '../auth/index.js';
import { systemClock } from '../clock.js';
import { RUN_DIR } from '../config/load.js';
import type { Config } from '../config/types.js';
import { Limiter } from '../limits/limiter.js';
import { CallPipeline } from '../pipeline/call-pipeline.js';
import { InFlight } from '../pipeline/in-flight.js';
import { ListView } from '../pipeline/list-view.js';
import type { StatePort } from '../pipeline/ports.js';
import { declaredFactNames, resourceExtractors } from '../policy/input.js';
import { loadPolicies } from '../policy/policy-set.js';
import type { Logger } from '../types.js';
import { Catalog } from '../upstream/catalog.js';
import type { FetchLike } from '../upstream/connection.js';

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
  inFlight: InFlight;
  authConfig: AuthConfig;
  /** Releases what startCore acquired (services, engines, keys, the runtime folder). */
  stop(): Promise<void>;
}

/** Everything but the listener: shared by `serve` and `stdio`. */
export async function startCore(config: Config, opts: { dev: boolean }): Promise<Core> {
  const baseDir = path.dirname(config.source);
  const authConfig = resolveAuthPaths(config, baseDir);
  const audit = await openAuditLog(auditOptionsFromConfig(config.audit, { dev: opts.dev, baseDir, version: VERSION }));
  const log: Logger = createLogger({ level: config.logging?.level ?? 'info', redact: audit.redactor });
  const refusals = new Refusals(audit, log);
  // The JWKS file stdio services read to verify their per-call credentials; private to this process.
  mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
  const minter = await createServiceCredentialMinter({ ...(authConfig.service_credentials ?? {}), jwks_file: path.join(RUN_DIR, 'service-jwks.json') });
  const binder = await createStateBinder(authConfig.state_binding ?? {});
  const state: StatePort = { sign: (p, payload) => binder.signState(p, payload), verify: (p, t) => binder.verifyState(p, t) };
  const policy = await loadPolicies(config.policy, {
    baseDir,
    log,
    resourceFacts: declaredFactNames(config.services),
    onReload: (info) => void refusals.policyReloaded(info),
    onReloadError: (e) => {
      log.error({ err: e.message }, 'policy reload failed; the last good policy set keeps running');
      void refusals.policyReloadRejected(e);
    },
  });
  const catalog = new Catalog(config, log, await serviceEnvironments(config, authConfig, minter));
  await catalog.start();
  const clock = systemClock;
  const inFlight = new InFlight(clock);
  const limiter = new Limiter(config.limits);
  const lists = new ListView({ catalog, policy, state, log, pageSize: config.server.page_size, clock });
  const resources = resourceExtractors(config.services);
  const calls = new CallPipeline({ catalog, policy, audit, credentials: minter, state, log, limiter, inFlight, clock, resources });
  return {
    log,
    audit,
    refusals,
    minter,
    state,
    catalog,
    lists,
    calls,
    inFlight,
    authConfig,
    async stop() {
      await catalog.stop();
      calls.parked.clear();
      policy.close();
      minter.close();
      rmSync(RUN_DIR, { recursive: true, force: true });
    },
  };
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
