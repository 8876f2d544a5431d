/**
 * Waiting for what another process writes (a test service's marker lines, the gateway's audit
 * records), woken by the file system's change events rather than by a polling timer.
 */
import { readFileSync, watch } from 'node:fs';
import path from 'node:path';

/**
 * Resolves with the first truthy value of `check()`, evaluated now and again on every change in
 * the folder `dir`. The deadline `ms` only ever fails the test; it never stands in for the event.
 */
export function whenChanged<T>(dir: string, check: () => T | undefined | false, ms = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      watcher.close();
      clearTimeout(timer);
      fn();
    };
    // A check may throw while a writer is mid-way (a file renamed by rotation): not yet, try again
    // at the next change; the last error is reported if the deadline passes.
    let lastError: unknown;
    const test = () => {
      try {
        const v = check();
        if (v) finish(() => resolve(v));
      } catch (e) {
        lastError = e;
      }
    };
    const watcher = watch(dir, test);
    const timer = setTimeout(() => finish(() => reject(new Error(`${dir}: the awaited change did not happen within ${ms} ms`, { cause: lastError }))), ms);
    // Checked after the watcher is in place, so a write cannot fall between the two.
    test();
  });
}

/** Resolves with the text of `file` (which may not exist yet) once `until(text)` holds. */
export function fileText(file: string, until: (text: string) => boolean, ms?: number): Promise<string> {
  const read = (): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  return whenChanged(
    path.dirname(file),
    () => {
      const text = read();
      return until(text) && { text };
    },
    ms,
  ).then((r) => r.text);
}

/** Resolves once `file` holds the line `line`. */
export function fileLine(file: string, line: string, ms?: number): Promise<string> {
  return fileText(file, (text) => text.split('\n').includes(line), ms);
}
