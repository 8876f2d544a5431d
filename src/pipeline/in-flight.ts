/**
 * Calls being forwarded right now, so a shutdown can wait for them (SIGTERM drains, then the audit
 * records whatever is still open as cancelled).
 */
import type { Clock } from '../clock.js';

export class InFlight {
  private count = 0;
  private waiters: Array<() => void> = [];

  constructor(private readonly clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>) {}

  get size(): number {
    return this.count;
  }

  /** Counts one call in; the returned function counts it out (idempotent). */
  enter(): () => void {
    this.count++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.count--;
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Resolves when no call is in flight, or after `ms`, whichever comes first. */
  async drain(ms: number): Promise<void> {
    if (this.count === 0) return;
    await new Promise<void>((resolve) => {
      const t = this.clock.setTimeout(done, ms);
      const self = this;
      function done() {
        self.clock.clearTimeout(t);
        self.waiters = self.waiters.filter((w) => w !== done);
        resolve();
      }
      this.waiters.push(done);
    });
  }
}
