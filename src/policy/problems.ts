/** Compile and validation problems, reported with file, line and reason. */
import { GatewayError } from '../errors.js';
import type { EngineName } from './types.js';

export interface PolicyProblem {
  engine: EngineName;
  /** Path as given in the config (or relative to the policy dir). */
  file: string;
  /** 1-based line, or null when the engine did not say. */
  line: number | null;
  reason: string;
}

export function formatProblem(p: PolicyProblem): string {
  return `${p.file}${p.line === null ? '' : `:${p.line}`}: ${p.reason}`;
}

/** The ERR_POLICY_COMPILE error for a set of problems; its message names file, line and reason. */
export function compileError(problems: PolicyProblem[]): GatewayError {
  const head = problems.slice(0, 5).map(formatProblem).join('; ');
  const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : '';
  return new GatewayError('ERR_POLICY_COMPILE', `policy set rejected: ${head}${more}`, {
    problems: problems.map((p) => ({ ...p })),
  });
}

/** 1-based line of a character offset in a text. */
export function lineOf(text: string, offset: number): number {
  let line = 1;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
