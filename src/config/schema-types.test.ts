import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { PACKAGE_ROOT } from './load.js';

/** schemas/generate-types.mjs: every generated file (path from the package root) and its content. */
interface Generator {
  generate(): Promise<Map<string, string>>;
}

function firstDifference(committed: string, fresh: string): string {
  const a = committed.split('\n');
  const b = fresh.split('\n');
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `line ${i + 1} is ${JSON.stringify(a[i] ?? '<end of file>')}, the schemas give ${JSON.stringify(b[i] ?? '<end of file>')}`;
}

test('schemas/generated/ is what the schemas generate (a schema change lands with `make schemas`)', async () => {
  const generator = (await import(pathToFileURL(path.join(PACKAGE_ROOT, 'schemas', 'generate-types.mjs')).href)) as Generator;
  const fresh = await generator.generate();
  for (const [rel, text] of fresh) {
    const committed = await readFile(path.join(PACKAGE_ROOT, rel), 'utf8').catch(() => null);
    assert.ok(committed !== null, `${rel} is missing: run \`make schemas\` and commit the result`);
    if (committed !== text) assert.fail(`${rel} is stale: ${firstDifference(committed, text)}. Run \`make schemas\` and commit the result.`);
  }
  const leftovers = (await readdir(path.join(PACKAGE_ROOT, 'schemas', 'generated'))).map((f) => `schemas/generated/${f}`).filter((f) => !fresh.has(f));
  assert.deepEqual(leftovers, [], 'files in schemas/generated/ that no schema generates');
});
