import * as path from 'node:path';
import type { AuditConfigInput } from '../../schemas/generated/config.js';
import type { AuditOptions } from './audit-log.js';

/**
 * The `audit:` section as a config file or a caller writes it (type generated from
 * schemas/config-audit.schema.json); auditOptionsFromConfig fills in the defaults.
 */
export type AuditConfig = AuditConfigInput;

/**
 * Defaults, written down in one place (schema defaults mirror them). `fsync: always` is the
 * default because the audit promise is "recorded before forwarded"; group commit keeps it cheap.
 */
export const AUDIT_DEFAULTS = {
  file: 'audit/audit.jsonl',
  devFile: '.dev/audit/audit.jsonl',
  stdout: false,
  fsync: 'always',
  fsync_interval_ms: 1000,
  rotate_bytes: 64 * 1024 * 1024,
  keep_files: 10,
  log_arguments: false,
  log_results: false,
} as const;

/**
 * Map the validated `audit:` section to `openAuditLog` options. `dev` picks `.dev/audit/audit.jsonl`
 * when no file is configured; `baseDir` resolves a relative `file`.
 */
export function auditOptionsFromConfig(
  cfg: AuditConfig | undefined,
  ctx: { dev?: boolean; baseDir?: string; instanceId?: string; version?: string } = {},
): AuditOptions {
  const c = cfg ?? {};
  const file = c.file === null ? null : (c.file ?? (ctx.dev ? AUDIT_DEFAULTS.devFile : AUDIT_DEFAULTS.file));
  const opts: AuditOptions = {
    file: file === null ? null : path.resolve(ctx.baseDir ?? process.cwd(), file),
    stdout: c.stdout ?? AUDIT_DEFAULTS.stdout,
    fsync: c.fsync ?? AUDIT_DEFAULTS.fsync,
    fsyncIntervalMs: c.fsync_interval_ms ?? AUDIT_DEFAULTS.fsync_interval_ms,
    rotateBytes: c.rotate_bytes ?? AUDIT_DEFAULTS.rotate_bytes,
    keepFiles: c.keep_files ?? AUDIT_DEFAULTS.keep_files,
    logArguments: c.log_arguments ?? AUDIT_DEFAULTS.log_arguments,
    logResults: c.log_results ?? AUDIT_DEFAULTS.log_results,
    redact: { paths: c.redact?.paths ?? [], patterns: c.redact?.patterns ?? [], keys: c.redact?.keys ?? [] },
  };
  if (ctx.instanceId !== undefined) opts.instanceId = ctx.instanceId;
  if (ctx.version !== undefined) opts.version = ctx.version;
  return opts;
}
