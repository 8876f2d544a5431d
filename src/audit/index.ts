/** The audit trail: records, sinks, redaction, hash chain, verify. See README.md beside this file. */
export { openAuditLog } from './audit-log.js';
export type { AuditLog, AuditOptions, AuditStats } from './audit-log.js';
export { verifyAuditFiles, auditVerify } from './verify.js';
export type { VerifyOptions, VerifyResult, VerifyProblem } from './verify.js';
export { createRedactor, CENSOR, resultFilter, SecretFinder } from './redact.js';
export type { Redactor, RedactOptions, RedactResult } from './redact.js';
export { createLogger } from './logger.js';
export type { LoggerOptions } from './logger.js';
export { auditOptionsFromConfig } from './config.js';
export type { AuditConfig } from './config.js';
export { canonicalJson, digest } from './canonical.js';
export { GENESIS_HASH, AUDIT_FORMAT_VERSION } from './records.js';
export type {
  AuditEventType,
  AuditOutcome,
  AuditReceipt,
  AuditRecord,
  DecisionInput,
  DecisionRecord,
  EventInput,
  EventRecord,
  OutcomeInput,
  OutcomeRecord,
} from './records.js';
export type { FsyncMode } from './sink.js';
