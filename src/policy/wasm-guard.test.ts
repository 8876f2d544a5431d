import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

// The guard's flag cannot be read back from JavaScript, and the abort it prevents shows in about one
// run in ten (wasm-guard.ts): what can be checked for sure is that each engine loads it first.
test('both policy engines import the WASM guard before any other module', () => {
  for (const engine of ['rego/engine.js', 'cedar/engine.js']) {
    const source = readFileSync(new URL(`./${engine}`, import.meta.url), 'utf8');
    assert.equal(/^import\s.*$/m.exec(source)?.[0], "import '../wasm-guard.js';", engine);
  }
});
