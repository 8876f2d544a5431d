/**
 * Memoised decisions of one engine instance (one policy revision). Each engine keys an answer by
 * exactly what its policies can read of a request, so a hit is the answer the engine would give.
 *
 * An answer is kept the second time its key is seen, not the first. Requests that never repeat
 * (fs.read with a new path on every call) would otherwise fill the memo with entries no call
 * reads again, and each one lives long enough for V8 to copy it into the old generation: measured
 * on 2 cores, a 10,000-entry memo that kept every answer made such a decision ~3 µs (Rego) to
 * ~6 µs (Cedar) slower than keeping none. Whether a key was seen is a 32-bit hash in a fixed
 * table, which retains no object; a collision only keeps an answer early.
 */
import type { EngineResult } from './types.js';

/** Bounded, so hostile argument variety cannot grow memory: the oldest entry goes first. */
const MEMO_MAX = 10_000;
/** Slots of the seen-once table (a power of two). */
const SEEN_SLOTS = 4096;

/** FNV-1a over the key's UTF-16 code units; never 0 (an empty slot). */
function hashOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h === 0 ? 1 : h;
}

export class DecisionMemo {
  /** Oldest first (a Map keeps insertion order). */
  readonly #entries = new Map<string, EngineResult>();
  readonly #seen = new Int32Array(SEEN_SLOTS);

  get(key: string): EngineResult | undefined {
    return this.#entries.get(key);
  }

  /**
   * Offers a successful answer (an engine error is never memoised). Kept, frozen, when its key was
   * seen before; returns the answer either way.
   */
  remember(key: string, result: EngineResult): EngineResult {
    const h = hashOf(key);
    const slot = h & (SEEN_SLOTS - 1);
    if (this.#seen[slot] !== h) {
      this.#seen[slot] = h;
      return result;
    }
    // Shared by every later hit: frozen so no caller can change another call's reasons.
    for (const r of result.reasons) Object.freeze(r);
    Object.freeze(result.reasons);
    Object.freeze(result.obligations);
    Object.freeze(result);
    if (this.#entries.size >= MEMO_MAX) this.#entries.delete(this.#entries.keys().next().value as string);
    this.#entries.set(key, result);
    return result;
  }
}
