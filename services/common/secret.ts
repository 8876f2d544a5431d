/**
 * Secret references: a service that holds a credential of its own (the github connector's token, the
 * vector service's embeddings key) is told where to find it, never the value on its command line
 * (which every process on the host can read). Two kinds: an environment variable name (the gateway
 * passes it to this service alone with `inherit_env` or `env`) or an absolute file path (under the
 * sandbox, a file in the service's `--allow-fs-read` and `sandbox.read`). The value is read once at
 * start; an env variable is then removed from `process.env`. Messages name the reference, never the value.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { UsageError } from './args.js';

/** What --*-env flags accept, shown in their help. */
export const SECRET_FLAGS_HELP = 'the variable must be set for this service alone';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
// Printable ASCII without spaces: API keys and tokens never need more, and a stray newline or
// control character would otherwise end up inside an HTTP header.
const SECRET_VALUE = /^[\x21-\x7e]{1,4096}$/;

/**
 * Reads the secret `--<name>-env NAME` or `--<name>-file FILE` refers to; undefined when neither is
 * given. Throws UsageError when both are given, the reference is malformed, or the value is missing,
 * empty or malformed (without showing it).
 */
export function readSecret(
  name: string,
  ref: { env?: string | undefined; file?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (ref.env !== undefined && ref.file !== undefined) throw new UsageError(`give either --${name}-env or --${name}-file, not both`);
  let value: string;
  if (ref.env !== undefined) {
    if (!ENV_NAME.test(ref.env)) throw new UsageError(`--${name}-env ${ref.env}: not an environment variable name`);
    const v = env[ref.env];
    if (v === undefined || v === '') throw new UsageError(`--${name}-env ${ref.env}: the variable is not set for this service`);
    value = v;
    // The value lives on in this process's memory only; nothing this process starts could inherit it.
    delete env[ref.env];
  } else if (ref.file !== undefined) {
    if (!isAbsolute(ref.file)) throw new UsageError(`--${name}-file must be an absolute path`);
    try {
      value = readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      throw new UsageError(`--${name}-file: the file is missing or not readable (under the sandbox, add it to --allow-fs-read and sandbox.read)`);
    }
  } else {
    return undefined;
  }
  if (!SECRET_VALUE.test(value))
    throw new UsageError(`the secret --${name}-${ref.env !== undefined ? 'env' : 'file'} refers to is empty or malformed (printable ASCII, no spaces)`);
  return value;
}
