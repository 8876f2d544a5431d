/**
 * Verified JWT claims -> the frozen Principal that policies see, following the `claims` mapping of
 * the config (which claim is the subject, the groups, the scopes, ...). Issuers name these claims
 * differently (Keycloak `realm_access.roles`, Entra ID `roles`, Okta `groups`), so every entry is a
 * claim name or a dotted path, and a list means "the first one present wins".
 */
import type { JWTPayload } from 'jose';
import type { Principal } from '../types.js';
import { fail } from './failures.js';

/** The `claims` config mapping (ClaimsMapping) or its defaults (AUTH_DEFAULTS.claims), merged. */
export interface ClaimSources {
  subject?: string;
  groups?: string | readonly string[];
  scopes?: string | readonly string[];
  client?: string | readonly string[];
  actor?: string;
  purpose?: string;
  purposes?: string;
  attributes?: readonly string[];
}

/** Reads a claim by name or dotted path. */
function claimAt(payload: JWTPayload, path: string): unknown {
  if (path in payload) return payload[path];
  let cur: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function firstClaim(payload: JWTPayload, names: string | readonly string[]): unknown {
  for (const n of typeof names === 'string' ? [names] : names) {
    const v = claimAt(payload, n);
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

function stringList(v: unknown, sep: RegExp): string[] {
  if (typeof v === 'string') return v.split(sep).filter((s) => s.length > 0);
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string' && s.length > 0);
  return [];
}

/** RFC 8693 `act`: the outermost actor is the party calling now; nested ones acted before it. */
function actorChain(act: unknown): string[] {
  const chain: string[] = [];
  let cur = act;
  for (let depth = 0; depth < 8 && typeof cur === 'object' && cur !== null; depth++) {
    const sub = (cur as Record<string, unknown>).sub ?? (cur as Record<string, unknown>).client_id;
    if (typeof sub === 'string') chain.push(sub);
    cur = (cur as Record<string, unknown>).act;
  }
  return chain;
}

function deepFreeze(p: Principal): Principal {
  Object.freeze(p.groups);
  Object.freeze(p.scopes);
  Object.freeze(p.client);
  if (p.purposes) Object.freeze(p.purposes);
  for (const v of Object.values(p.attributes)) if (Array.isArray(v)) Object.freeze(v);
  Object.freeze(p.attributes);
  return Object.freeze(p);
}

/**
 * The Principal for a verified payload from `issuer`. Throws GatewayError(ERR_AUTH_CLAIM_MISSING)
 * when the subject claim is absent or empty; every other field falls back to "none".
 */
export function principalFromClaims(payload: JWTPayload, claims: ClaimSources, issuer: string): Principal {
  const subjectClaim = claims.subject ?? 'sub';
  const subject = claimAt(payload, subjectClaim);
  if (typeof subject !== 'string' || subject.length === 0) fail('ERR_AUTH_CLAIM_MISSING', { claim: subjectClaim });
  const client = firstClaim(payload, claims.client ?? []);
  const purpose = claims.purpose ? claimAt(payload, claims.purpose) : undefined;
  // The purposes the issuer grants: a declared purpose outside them (and outside the policy's
  // grants by group) is denied by policy (purpose_not_granted). A bound purpose is granted too.
  const bound = typeof purpose === 'string' && purpose.length > 0 ? purpose : null;
  const granted = claims.purposes ? stringList(claimAt(payload, claims.purposes), /[\s,]+/) : [];
  const attributes: Record<string, unknown> = {};
  const chain = claims.actor ? actorChain(claimAt(payload, claims.actor)) : [];
  if (chain.length > 0) {
    attributes.actor = chain[0];
    attributes.actor_chain = chain;
  }
  for (const name of claims.attributes ?? []) {
    const v = claimAt(payload, name);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attributes[name] = v;
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) attributes[name] = [...v];
  }
  const p: Principal = {
    id: subject,
    type: 'user',
    issuer,
    groups: stringList(firstClaim(payload, claims.groups ?? []), /[\s,]+/),
    attributes,
    scopes: stringList(firstClaim(payload, claims.scopes ?? []), /\s+/),
    client: { id: typeof client === 'string' && client.length > 0 ? client : null },
    purpose: bound,
    purposes: [...new Set(bound === null ? granted : [...granted, bound])].sort(),
  };
  if (typeof payload.jti === 'string') p.token_id = payload.jti;
  if (typeof payload.exp === 'number') p.expires_at = payload.exp;
  return deepFreeze(p);
}
