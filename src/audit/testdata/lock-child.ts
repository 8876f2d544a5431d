/**
 * Child for sink.test: reads `open <path>` and `close` lines from stdin. `open` answers `ok` or the
 * error's message; `close` closes the sink it holds (if any) and answers `closed`.
 */
import { createInterface } from 'node:readline';
import { FileSink } from '../sink.js';

let held: FileSink | undefined;
const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
for await (const line of lines) {
  if (line.startsWith('open ')) {
    try {
      held = (await FileSink.open({ path: line.slice(5), rotateBytes: 0, keepFiles: 0, syncDir: false })).sink;
      process.stdout.write('ok\n');
    } catch (e) {
      process.stdout.write(`${e instanceof Error ? e.message : String(e)}\n`);
    }
  } else if (line === 'close') {
    await held?.close();
    held = undefined;
    process.stdout.write('closed\n');
  }
}
