import * as path from 'node:path';
import { AUDIT_CONFIG_DEFAULTS as DEFAULTS } from '../../schemas/generated/config.js';
import type { AuditConfigInput } from '../../schemas/generated/config.js';
import type { AuditOptions } from './audit-log.js';

/**
 * The `audit:` section as a config file or a caller writes it (type generated from
 * schemas/config-audit.schema.json); auditOptionsFromConfig fills in the defaults.
 */
export type AuditConfig = AuditConfigInput;

/** `audit.file` when none is configured: the one default the schema cannot hold, since --dev picks another. */
const DEFAULT_FILE = 'audit/audit.jsonl';
const DEFAULT_DEV_FILE = '.dev/audit/audit.jsonl';

/**
 * Map the validated `audit:` section to `openAuditLog` options, with the schema's defaults
 * (generated from schemas/config-audit.schema.json). `dev` picks `.dev/audit/audit.jsonl` when no
 * file is configured; `baseDir` resolves a relative `file`.
 */
export function auditOptionsFromConfig(
  cfg: AuditConfig | undefined,
  ctx: { dev?: boolean; baseDir?: string; instanceId?: string; version?: string } = {},
): AuditOptions {
  const c = cfg ?? {};
  const file = c.file === null ? null : (c.file ?? (ctx.dev ? DEFAULT_DEV_FILE : DEFAULT_FILE));
  const opts: AuditOptions = {
    file: file === null ? null : path.resolve(ctx.baseDir ?? process.cwd(), file),
    stdout: c.stdout ?? DEFAULTS.stdout,
    fsync: c.fsync ?? DEFAULTS.fsync,
    fsyncIntervalMs: c.fsync_interval_ms ?? DEFAULTS.fsync_interval_ms,
    // Only an answer held for its outcome record needs that record synced before it resolves.
    syncOutcomes: c.outcome_before_answer ?? DEFAULTS.outcome_before_answer,
    rotateBytes: c.rotate_bytes ?? DEFAULTS.rotate_bytes,
    keepFiles: c.keep_files ?? DEFAULTS.keep_files,
    logArguments: c.log_arguments ?? DEFAULTS.log_arguments,
    logResults: c.log_results ?? DEFAULTS.log_results,
    redact: { paths: c.redact?.paths ?? [], patterns: c.redact?.patterns ?? [], keys: c.redact?.keys ?? [] },
  };
  if (ctx.instanceId !== undefined) opts.instanceId = ctx.instanceId;
  if (ctx.version !== undefined) opts.version = ctx.version;
  return opts;
}
