/**
 * MCP log levels (RFC 5424 severities, lowest first) and the per-agent threshold a service's
 * `notifications/message` must reach to be relayed to the agent whose call caused it.
 */
import type { LoggingLevel } from '@modelcontextprotocol/server';

/** Every level the protocol defines, in increasing severity. */
export const LOG_LEVELS: readonly LoggingLevel[] = Object.freeze(['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency']);

/** True for a string that names a protocol log level. */
export function isLogLevel(v: unknown): v is LoggingLevel {
  return typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v);
}

/** True when a message at `level` reaches an agent whose threshold is `threshold` (an unknown level never does). */
export function atOrAbove(level: unknown, threshold: LoggingLevel): boolean {
  return isLogLevel(level) && LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(threshold);
}
