/**
 * What gateway replicas share. One process needs nothing outside itself (the in-memory state);
 * several replicas behind a load balancer share it through Redis (`state: {redis: URL}`): call limits,
 * replay caches, every replica's public signing keys. Each piece is one small interface, so a module
 * that needs it takes only that (the call limiter, the authenticator's jti cache, the JWKS document, the event bus).
 */
import type { JSONWebKeySet } from 'jose';

/** How a call admission went: admitted (release it when the call ends) or refused by a named limit. */
export type Admission =
  | { release: () => void }
  | { refused: { limit: 'rate'; retryAfterS: number } | { limit: 'concurrency' } | { limit: 'concurrency_total' } | { limit: 'state_unavailable' } };

/** Rate per principal x service x tool, calls in flight per principal and in all. */
export interface CallLimiter {
  /** One atomic check (and take) per call; `ttlMs` bounds how long an unreleased slot counts (a dead replica's calls). */
  admit(principal: string, service: string, tool: string, ttlMs: number): Promise<Admission>;
}

/** Ids seen once, for as long as what carries them could still be accepted. */
export interface ReplayCache {
  /** True the first time `id` is seen (remembered for `ttlMs`), false after. Rejects when the store is unreachable. */
  firstSight(id: string, ttlMs: number): Promise<boolean>;
}

/** Every replica's public keys for per-service credentials, so a remote service accepts any replica's. */
export interface KeyDirectory {
  /** Publishes this replica's keys (refreshed on every rotation). */
  publish(replicaId: string, jwks: JSONWebKeySet, ttlMs: number): Promise<void>;
  /** Every live replica's keys, deduplicated by kid; this replica's own are always among them. */
  all(own: JSONWebKeySet): Promise<JSONWebKeySet>;
}

/** What one replica tells the others: one of its services' lists changed. */
export interface ListChangedEvent {
  type: 'list_changed';
  service: string;
  kind: 'tools' | 'prompts' | 'resources';
}

/** What one replica tells the others: a service said one of its resources changed. */
export interface ResourceUpdatedEvent {
  type: 'resource_updated';
  service: string;
  uri: string;
}

export type ReplicaEvent = ListChangedEvent | ResourceUpdatedEvent;

/** Carries events between replicas: every other replica's subscribers receive what one publishes, never the publisher's own. */
export interface EventBus {
  /** Best effort: an event published while the store is unreachable is lost (both kinds are hints: agents list or read again). */
  publish(event: ReplicaEvent): void;
  /** Events from the other replicas; returns the unsubscribe. */
  subscribe(handler: (event: ReplicaEvent) => void): () => void;
}

/** A request to another replica found nobody listening (that replica is gone), or got no answer in time. */
export class ReplicaUnreachable extends Error {
  constructor(
    readonly replica: string,
    readonly why: 'gone' | 'timeout',
  ) {
    super(why === 'gone' ? `replica ${replica} is gone` : `replica ${replica} did not answer in time`);
  }
}

/** Requests from one replica to a named other (the one that holds a call). */
export interface ReplicaCalls {
  /**
   * Sends `body` to replica `to` and resolves with what its handler answered (a handler's failure
   * rejects with an Error carrying its message). Rejects with ReplicaUnreachable at once when `to` is
   * not listening, or after `timeoutMs` without an answer.
   */
  request(to: string, body: unknown, timeoutMs: number): Promise<unknown>;
  /** Answers the requests sent to this replica (one handler; returns the unregister). */
  serve(handler: (body: unknown) => Promise<unknown>): () => void;
}

/**
 * Consent grants (issue #14): a user's approval of one exact call shape (a key hashed from
 * principal, tool, argument digest and policy revision), until it expires. Shared, so that an
 * approval given through one replica holds on every replica.
 */
export interface ConsentGrants {
  /** Records the grant until `expiresAtMs` (ms since epoch). Rejects when the store is unreachable. */
  grant(key: string, expiresAtMs: number): Promise<void>;
  /** The grant's expiry when one is live at `nowMs`, else undefined. Rejects when the store is unreachable. */
  find(key: string, nowMs: number): Promise<number | undefined>;
}

export interface SharedState {
  readonly kind: 'memory' | 'redis';
  readonly limiter: CallLimiter;
  readonly replay: ReplayCache;
  readonly keys: KeyDirectory;
  readonly events: EventBus;
  readonly peers: ReplicaCalls;
  readonly grants: ConsentGrants;
  /** For readiness: the store answers. */
  healthy(): boolean;
  /** What limits do while the store does not answer: refuse every call, or each replica limits alone (ready, degraded). */
  readonly degradedMode: 'refuse' | 'local';
  close(): Promise<void>;
}
