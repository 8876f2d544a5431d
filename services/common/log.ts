/**
 * Minimal structured logging to stderr (stdout belongs to the stdio MCP transport). One JSON line per
 * event. Callers pass only fixed fields (tool name, outcome, timings, error codes): never tool
 * arguments, file contents, URLs or credentials, so that nothing sensitive can reach a log sink.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger bound to one service name. */
export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, string | number | boolean>): void;
}

/** Creates the stderr logger; `minLevel` filters out lower levels (MICRO_MCP_LOG_LEVEL overrides). */
export function createLogger(service: string, minLevel: LogLevel = 'info'): Logger {
  const envLevel = process.env.MICRO_MCP_LOG_LEVEL;
  const min = order[(envLevel && envLevel in order ? envLevel : minLevel) as LogLevel];
  return {
    log(level, msg, fields) {
      if (order[level] < min) return;
      process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, service, msg, ...fields })}\n`);
    },
  };
}
