/**
 * The build's bundles (bin/bundle.mjs, the last step of `make build`): the gateway's command and every
 * service run bundled, and the bundled command still applies V8's WASM settings (src/policy/wasm-guard.ts)
 * before any module loads a WASM engine. Every other end-to-end test runs these same bundles (the
 * launcher and the example services are the bundled files), so this one checks only what those
 * cannot see: what the files are, and the order in which Node evaluates them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, DIST, ROOT } from '../helpers/harness.js';

/** What bin/bundle.mjs bundles, and how it finds the services: the same lists, not copies. */
const bundler = (await import(pathToFileURL(path.join(ROOT, 'bin', 'bundle.mjs')).href)) as {
  BUNDLED: ReadonlySet<string>;
  packageOf: (spec: string) => string;
  serviceEntries: (servicesDir: string) => string[];
};

const WASM_PACKAGES = /^(@cedar-policy\/cedar-wasm|@open-policy-agent\/opa-wasm)(\/|$)/;
const GUARD = `setFlagsFromString("--wasm-num-compilation-tasks=1")`;

/** The static imports of an ES module file, in source order ("import ... from", "import '...'", "export ... from"). */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s(?:[^;"']*?\sfrom\s*)?"([^"]+)";$/gm)) out.push(m[1] as string);
  return out;
}

/**
 * The order in which Node evaluates a module graph's files (depth first, imports in source order, each
 * file once, a file after its imports): relative imports are files, bare ones packages ("pkg:" + name).
 */
function evaluationOrder(entry: string, seen = new Set<string>(), order: string[] = []): string[] {
  seen.add(entry);
  for (const spec of staticImports(entry)) {
    if (spec.startsWith('.')) {
      const file = path.resolve(path.dirname(entry), spec);
      if (!seen.has(file)) evaluationOrder(file, seen, order);
    } else if (!seen.has(`pkg:${spec}`)) {
      seen.add(`pkg:${spec}`);
      order.push(`pkg:${spec}`);
    }
  }
  order.push(entry);
  return order;
}

/** The files a module loads with import() (the chunks of the gateway's commands). */
function dynamicImports(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/\bimport\("(\.[^"]+)"\)/g)].map((m) => path.resolve(path.dirname(file), m[1] as string));
}

const services = bundler.serviceEntries(path.join(DIST, 'services'));

describe('the bundled programs (make build)', () => {
  test('the command and every service import no bundled package from node_modules; a service reads nothing outside dist/services', () => {
    assert.deepEqual(
      services.map((s) => path.basename(path.dirname(s))),
      ['fs', 'github', 'http', 'vector'],
    );
    const chunksOf = new Map([[CLI, path.join(DIST, 'chunks')], ...services.map((s): [string, string] => [s, path.join(DIST, 'services', 'chunks')])]);
    for (const [entry, chunks] of chunksOf) {
      const order = evaluationOrder(entry);
      const fromNodeModules = order.filter((m) => m.startsWith('pkg:') && bundler.BUNDLED.has(bundler.packageOf(m.slice(4))));
      assert.deepEqual(fromNodeModules, [], `${path.relative(DIST, entry)} imports bundled packages from node_modules`);
      const files = order.filter((m) => !m.startsWith('pkg:') && m !== entry);
      assert.ok(files.length > 0, `${path.relative(DIST, entry)} is a bundle with chunks`);
      // A service runs under --allow-fs-read limited to dist/services (and its sandbox): its chunks must be there.
      for (const f of files) assert.ok(f.startsWith(chunks + path.sep), `${path.relative(DIST, entry)} loads ${path.relative(DIST, f)}`);
    }
  });

  test("the command sets V8's WASM flags before anything loads a WASM engine, and its commands load the engines after", () => {
    const order = evaluationOrder(CLI);
    const guardAt = order.findIndex((m) => !m.startsWith('pkg:') && readFileSync(m, 'utf8').includes(GUARD));
    assert.ok(guardAt >= 0, 'the wasm guard is in the static graph of the command');
    const engineAt = order.findIndex((m) => m.startsWith('pkg:') && WASM_PACKAGES.test(m.slice(4)));
    assert.equal(engineAt, -1, `a WASM engine loads before the command runs: ${order[engineAt]}`);
    // serve, stdio and the policy commands are dynamic imports, evaluated once the command's own code
    // (after the guard) runs: each of them that loads an engine is the same evaluation, later.
    const commands = dynamicImports(CLI);
    const loadingEngines = commands.filter((c) => evaluationOrder(c).some((m) => m.startsWith('pkg:') && WASM_PACKAGES.test(m.slice(4))));
    assert.ok(
      loadingEngines.some((c) => path.basename(c).startsWith('serve-')),
      `the serve command loads the WASM engines (commands: ${commands.map((c) => path.basename(c)).join(', ')})`,
    );
  });
});
