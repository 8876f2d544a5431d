import type { Clock } from '../../src/clock.js';

/**
 * A clock the test moves by hand (`advance`). Its timers never fire on their own: code under test that
 * schedules work (a reaper, an expiry) is driven by calling that work directly after advancing.
 */
export function manualClock(start = 0): Clock & { advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    setTimeout: (_fn: () => void, _ms: number) => setTimeout(() => undefined, 0),
    clearTimeout: () => undefined,
    advance: (ms: number) => void (t += ms),
  };
}
