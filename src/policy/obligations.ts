/**
 * Obligations: what a decision requires of the gateway besides allow or deny. Both engines state
 * them (Rego: the `obligations` object; Cedar: annotations on the deciding policies) in one raw
 * shape; this module checks each engine's raw obligations against the ones the gateway knows and
 * merges them by fixed rules, the strictest winning. An obligation the gateway does not know, or
 * one it cannot read, denies the call: the gateway never allows while ignoring a condition.
 */
import type { Obligations, RedactCategory } from '../types.js';

/** Redaction categories an obligation may name (see src/audit/redact.ts for what each removes). */
export const REDACT_CATEGORIES: readonly RedactCategory[] = ['email', 'phone', 'card', 'secrets'];

/** Obligations the gateway knows, and so can act on. Every other name denies. */
export const KNOWN_OBLIGATIONS = ['step_up_scopes', 'reach', 'consent', 'redact', 'max_bytes', 'labels'] as const;

/** Data-category labels: lower-case words (pii, secret, internal, ...). */
const LABEL = /^[a-z][a-z0-9_-]{0,31}$/;

/** The largest max_bytes accepted (a bigger one would not limit anything the gateway forwards). */
const MAX_BYTES_LIMIT = 2 ** 31 - 1;

/** Why an engine's obligations cannot be acted on; becomes a denial reason (id and message safe to show). */
export interface ObligationProblem {
  id: 'unknown_obligation' | 'obligation_invalid';
  message: string;
}

const clip = (s: string): string => (s.length > 64 ? `${s.slice(0, 64)}...` : s);

/** Strings from an array or from a comma list (Cedar annotations are strings). */
function list(v: unknown): string[] | null {
  if (typeof v === 'string')
    return v
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== '');
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.map((x) => x.trim());
  return null;
}

const invalid = (name: string, why: string): ObligationProblem => ({
  id: 'obligation_invalid',
  message: `the policy's obligation "${name}" ${why}`,
});

/**
 * Checks one engine's raw obligations. Accepts both engines' spellings: Rego values
 * (`consent: true`, `redact: ["email"]`, `max_bytes: 65536`) and Cedar annotation strings
 * (`"email,secrets"`, `"65536"`). Returns the typed obligations, or the first problem.
 */
export function readObligations(raw: Readonly<Record<string, unknown>>): Obligations | ObligationProblem {
  const out: Obligations = {};
  for (const [name, v] of Object.entries(raw)) {
    switch (name) {
      case 'step_up_scopes': {
        const l = list(v);
        if (l === null) return invalid(name, 'is not a list of scopes');
        if (l.length > 0) out.step_up_scopes = [...new Set(l)].sort();
        break;
      }
      case 'reach':
        // Its members are checked where the credential is built (policy/input decisionReach).
        if (typeof v !== 'object' || v === null || Array.isArray(v)) return invalid(name, 'is not an object');
        out.reach = v as Record<string, unknown>;
        break;
      case 'consent':
        if (v === true || v === 'true') out.consent = true;
        else if (v !== false && v !== 'false') return invalid(name, 'is not true or false');
        break;
      case 'redact': {
        const l = list(v);
        if (l === null) return invalid(name, 'is not a list of categories');
        const bad = l.find((c) => !(REDACT_CATEGORIES as readonly string[]).includes(c));
        if (bad !== undefined) return invalid(name, `names an unknown category "${clip(bad)}" (known: ${REDACT_CATEGORIES.join(', ')})`);
        if (l.length > 0) out.redact = [...new Set(l as RedactCategory[])].sort();
        break;
      }
      case 'max_bytes': {
        const n = typeof v === 'string' && /^[0-9]{1,10}$/.test(v.trim()) ? Number(v.trim()) : v;
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_BYTES_LIMIT)
          return invalid(name, `is not an integer from 1 to ${MAX_BYTES_LIMIT}`);
        out.max_bytes = n;
        break;
      }
      case 'labels': {
        const l = list(v);
        if (l === null) return invalid(name, 'is not a list of labels');
        const bad = l.find((x) => !LABEL.test(x));
        if (bad !== undefined) return invalid(name, `has a label that is not a lower-case word: "${clip(bad)}"`);
        if (l.length > 0) out.labels = [...new Set(l)].sort();
        break;
      }
      default:
        return { id: 'unknown_obligation', message: `the policy requires an obligation this gateway does not know: "${clip(name)}"` };
    }
  }
  return out;
}

export const isObligationProblem = (x: Obligations | ObligationProblem): x is ObligationProblem =>
  'id' in x && (x.id === 'unknown_obligation' || x.id === 'obligation_invalid');

/**
 * Merges two sets of obligations, the strictest winning: consent if either asks; every redaction
 * category and label of both; the smaller max_bytes; step-up scopes of both. `reach` only Rego can
 * state (Cedar has no annotation for it); were both to state one, the first is kept and the second
 * must equal it, else the merge reports a conflict (null) and the caller denies.
 */
export function mergeObligations(a: Obligations, b: Obligations): Obligations | null {
  const out: Obligations = { ...a };
  if (b.consent) out.consent = true;
  if (b.redact) out.redact = [...new Set([...(a.redact ?? []), ...b.redact])].sort();
  if (b.labels) out.labels = [...new Set([...(a.labels ?? []), ...b.labels])].sort();
  if (b.step_up_scopes) out.step_up_scopes = [...new Set([...(a.step_up_scopes ?? []), ...b.step_up_scopes])].sort();
  if (b.max_bytes !== undefined) out.max_bytes = a.max_bytes === undefined ? b.max_bytes : Math.min(a.max_bytes, b.max_bytes);
  if (b.reach !== undefined) {
    if (a.reach !== undefined && JSON.stringify(a.reach) !== JSON.stringify(b.reach)) return null;
    out.reach = b.reach;
  }
  return out;
}

/** Checks and merges raw obligation objects (one engine's, in order); the first problem wins. */
export function combineObligations(raws: readonly Readonly<Record<string, unknown>>[]): Obligations | ObligationProblem {
  let out: Obligations = {};
  for (const raw of raws) {
    const ob = readObligations(raw);
    if (isObligationProblem(ob)) return ob;
    const merged = mergeObligations(out, ob);
    if (merged === null) return { id: 'obligation_invalid', message: 'the policies state conflicting reach obligations' };
    out = merged;
  }
  return out;
}
