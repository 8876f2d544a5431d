/**
 * The one clock time-dependent gateway code reads, so tests can drive time instead of waiting for it.
 * Timers it starts are unref'd: a pending timeout never keeps the process alive on its own.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(t: NodeJS.Timeout): void;
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms).unref(),
  clearTimeout: (t: NodeJS.Timeout) => clearTimeout(t),
});
