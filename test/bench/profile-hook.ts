/**
 * Loaded into the gateway process by the bench only (NODE_OPTIONS=--import, since --cpu-prof is not
 * allowed there). SIGUSR2 starts the V8 CPU profiler, the next SIGUSR2 stops it and writes the
 * .cpuprofile to $MICRO_MCP_BENCH_PROFILE: the profile covers exactly the measured run, not start-up.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const out = process.env.MICRO_MCP_BENCH_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  let running = false;
  process.on('SIGUSR2', () => {
    if (!running) {
      running = true;
      // 100 µs sampling: fine enough for a few seconds of load, small enough to keep overhead low.
      session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 100 }, () => session.post('Profiler.start')));
      return;
    }
    running = false;
    session.post('Profiler.stop', (err, res) => {
      if (err) return;
      writeFileSync(`${out}.tmp`, JSON.stringify(res.profile));
      renameSync(`${out}.tmp`, out); // the bench polls for the final name
    });
  });
}
