/**
 * Waiting for what a process writes to a file (a test service's marker lines), woken by the file
 * system's change events rather than by a polling timer.
 */
import { readFileSync, watch } from 'node:fs';
import path from 'node:path';

/**
 * Resolves with the text of `file` once `until(text)` holds. The directory is watched, so the file
 * may not exist yet; the deadline `ms` only ever fails the test, it never stands in for the event.
 */
export function fileText(file: string, until: (text: string) => boolean, ms = 10_000): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const read = (): string => {
      try {
        return readFileSync(file, 'utf8');
      } catch {
        return '';
      }
    };
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      watcher.close();
      clearTimeout(timer);
      fn();
    };
    const check = () => {
      const text = read();
      if (until(text)) finish(() => resolve(text));
    };
    const watcher = watch(path.dirname(file), check);
    const timer = setTimeout(() => finish(() => reject(new Error(`${file}: the awaited text did not appear within ${ms} ms`))), ms);
    // Checked after the watcher is in place, so a write cannot fall between the two.
    check();
  });
}

/** Resolves once `file` holds the line `line`. */
export function fileLine(file: string, line: string, ms?: number): Promise<string> {
  return fileText(file, (text) => text.split('\n').includes(line), ms);
}
