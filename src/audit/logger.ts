import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import { createRedactor } from './redact.js';
import type { RedactOptions, Redactor } from './redact.js';

export interface LoggerOptions {
  /** pino level; default `info`. */
  level?: string;
  /** Shared with the audit log so both censor the same things. */
  redact?: RedactOptions | Redactor;
  /** Default: stderr (fd 2), so that stdout stays free for audit records or the stdio transport. */
  destination?: DestinationStream;
  /** Static fields on every line (`{ service: 'gateway' }`). */
  base?: Record<string, unknown>;
}

/** Header names censored by pino's path redaction as a second line of defence. */
const PINO_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.cookie',
  'token',
  'access_token',
  'password',
  'secret',
  'api_key',
  'private_key',
  '*.authorization',
  '*.token',
  '*.password',
  '*.secret',
];

/**
 * The operational logger (not the audit trail): pino to stderr, with every object and string
 * argument passed through the redactor (secret key names at any depth, bearer/JWT/key/email/card
 * patterns in text, Error messages and stacks). Redaction runs only for enabled levels, so
 * debug calls in hot paths cost nothing in production.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const redactor: Redactor =
    typeof (opts.redact as Redactor | undefined)?.redact === 'function' ? (opts.redact as Redactor) : createRedactor(opts.redact as RedactOptions | undefined);
  return pino(
    {
      level: opts.level ?? 'info',
      base: opts.base ?? null,
      redact: { paths: PINO_PATHS, censor: '[REDACTED]' },
      hooks: {
        logMethod(args, method) {
          const clean = args.map((a: unknown) =>
            typeof a === 'string' ? redactor.redactString(a) : typeof a === 'object' && a !== null ? redactor.redact(a).value : a,
          );
          // pino's LogFn overloads cannot be expressed for a spread of unknowns.
          return (method as (...a: unknown[]) => void).apply(this, clean);
        },
      },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
