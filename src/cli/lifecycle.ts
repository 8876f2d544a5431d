/**
 * The one owner of a gateway process's lifecycle. Every start-up step that acquires something (the
 * runtime folder, the audit log and its lock, service processes, the listener) registers how to
 * release it here; a failed step, a signal or a normal stop releases everything acquired so far,
 * newest first, exactly once. Signal handlers are installed when the lifecycle is created, before
 * anything is acquired, so a signal that arrives during start-up stops the start cleanly too.
 */

/** Thrown by `acquire` once a stop has begun: the start-up in progress gives up. */
export class StopRequested extends Error {
  constructor(readonly reason: string) {
    super(`stopped during start-up (${reason})`);
    this.name = 'StopRequested';
  }
}

interface Held {
  name: string;
  release: () => Promise<void> | void;
}

export interface LifecycleOptions {
  /** Signals that stop the process; default SIGTERM and SIGINT. */
  signals?: readonly NodeJS.Signals[];
  /** Called once the stop after a signal has finished (the CLI exits here). */
  onSignalStopped: (signal: NodeJS.Signals) => void;
  /** Where progress of a stop is reported (stderr in the CLI). */
  report: (line: string) => void;
}

export class Lifecycle {
  private readonly held: Held[] = [];
  private stopping: Promise<void> | undefined;
  private stopReason: string | undefined;
  private readonly handlers = new Map<NodeJS.Signals, () => void>();

  constructor(private readonly opts: LifecycleOptions) {
    for (const signal of opts.signals ?? ['SIGTERM', 'SIGINT']) {
      const handler = () => {
        if (this.stopping !== undefined) return;
        opts.report(`micro-mcp: ${signal}: draining in-flight calls and flushing the audit log`);
        void this.stop(signal).then(() => opts.onSignalStopped(signal));
      };
      this.handlers.set(signal, handler);
      // `on`, not `once`: a second signal during the drain must not kill the process half-way.
      process.on(signal, handler);
    }
  }

  /** True once a stop has begun (start-up steps check it between awaits through `acquire`). */
  get stopped(): boolean {
    return this.stopping !== undefined;
  }

  /**
   * Registers `value` as held until stop. When a stop has already begun (a signal arrived while this
   * resource was being acquired), releases it at once and throws StopRequested.
   */
  async acquire<T>(name: string, value: T, release: (value: T) => Promise<void> | void): Promise<T> {
    if (this.stopping !== undefined) {
      await release(value);
      throw new StopRequested(this.stopReason ?? 'stop');
    }
    this.held.push({ name, release: () => release(value) });
    return value;
  }

  /** Releases everything held, newest first; idempotent (every caller waits for the same stop). */
  stop(reason = 'stop'): Promise<void> {
    if (this.stopping === undefined) {
      this.stopReason = reason;
      this.stopping = this.releaseAll();
    }
    return this.stopping;
  }

  private async releaseAll(): Promise<void> {
    while (this.held.length > 0) {
      const h = this.held.pop()!;
      try {
        await h.release();
      } catch (e) {
        // One failed release must not keep the others (the lock, the children) held.
        this.opts.report(`micro-mcp: releasing ${h.name} failed: ${(e as Error).message}`);
      }
    }
    for (const [signal, handler] of this.handlers) process.off(signal, handler);
  }
}
