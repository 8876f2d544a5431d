/**
 * Work asked for during one turn of the event loop, done together at the end of the turn: in one
 * setImmediate callback, after the poll phase has handled every socket and pipe that was ready.
 *
 * The call pipeline makes its policy decisions this way. Made one at a time, each decision ran
 * between other requests' HTTP parsing, SDK handling and audit formatting, and found the engines'
 * WASM memory and code gone from the CPU caches: in the gateway at 16 agents, a decision on fs.read
 * with a new path took ~200 µs at p50 (audit records), against ~80 µs for both engines in a tight
 * loop (make bench's micro rows); in a tight loop that reads 32 MiB between decisions, Cedar's went
 * from ~57 to ~154 µs. Made together, the decisions of one turn share warm caches, and so do the
 * steps after each (the decision record, the service credential), which then run back to back in
 * the microtasks that follow the batch. A turn held ~3.4 decisions on average at 16 agents.
 *
 * Measured with the builds before and after alternated in one process (16 agents, 8 rounds of
 * 1,500 calls each, every round won by the batched build where it says 8/8):
 * - fs.read, 2026-07-28: 1,018 -> 1,190 calls/s, gateway CPU 952 -> 793 µs per call (8/8);
 * - fs.read, 2025: 693 -> 806 calls/s, 1,363 -> 1,143 µs (8/8);
 * - echo (decisions from the memo): 1,162 -> 1,197 and 1,043 -> 1,112 calls/s (4/8, 6/8);
 * - a decision on fs.read inside the gateway (audit records, p50): ~200-250 -> ~135-150 µs;
 * - one agent, 10-12 rounds of 500 calls: echo and 2025 fs.read 0.02-0.04 ms better at p50 (6-7 of
 *   10 rounds, 4 for 2025 fs.read); 2026-07-28 fs.read 0.09 and 0.44 ms worse in two runs (4 of 12 and
 *   5 of 10 rounds won), CPU per call the same: within this machine's spread, or the one extra turn.
 *
 * One call alone waits only for the end of the turn it asked in.
 */
export class TurnBatch {
  private queue: Array<() => void> = [];

  /** Runs `work` with the rest of this turn's work; settles with its result (or what it threw) alone. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const queued = this.queue.push(() => {
        try {
          resolve(work());
        } catch (e) {
          reject(e);
        }
      });
      if (queued === 1) setImmediate(this.flush);
    });
  }

  private readonly flush = (): void => {
    const due = this.queue;
    this.queue = [];
    for (const work of due) work();
  };
}
