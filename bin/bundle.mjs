#!/usr/bin/env node
/**
 * The last step of `make build`, after tsc: bundles the programs that run as processes (the gateway's
 * command, dist/src/cli/main.js, and each service's dist/services/<name>/main.js) in place: the
 * command's code split into dist/chunks/, the code the services share into dist/services/chunks/.
 * Every path that runs them stays what it was (bin/micro-mcp, the example configs, the docs); the
 * rest of dist/ is tsc's output, which the tests import.
 *
 * Why: Node loads each ES module separately (resolve, read, compile, link). The gateway's command
 * reached ~310 of them (ours, zod, jose, hono, the MCP SDK), ~0.4 s on 2 cores before any of its
 * start-up work, and every service loaded its own ~150. Bundled, a gateway with one sandboxed service
 * was ready in 0.48-0.54 s instead of 0.76-0.93 s, and its settled RSS fell by ~4 MiB
 * (docs/ARCHITECTURE.md, "Decisions and their reasons").
 *
 * What is bundled: our code and the ES-module packages on the request path (BUNDLED below). Every
 * other package stays an import of node_modules as before: CommonJS packages (pino, yaml, ajv,
 * ioredis, prom-client ...), the WASM engines (cedar-wasm reads its .wasm beside itself), and the
 * packages loaded only when configured (OpenTelemetry). Dynamic imports stay dynamic (their own
 * chunks), so a gateway without Redis, metrics or traces still never loads them.
 *
 * Source maps: esbuild follows tsc's maps, so dist's .map files point at the TypeScript sources
 * (`node --enable-source-maps` uses them).
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');

/** Packages bundled: pure ES modules, no files read beside themselves, no native code. */
export const BUNDLED = new Set([
  'zod',
  'jose',
  'hono',
  '@hono/node-server',
  '@modelcontextprotocol/server',
  '@modelcontextprotocol/client',
  '@modelcontextprotocol/core',
  '@modelcontextprotocol/node',
  'eventsource',
  'eventsource-parser',
  'pkce-challenge',
]);

/** "pkg" or "@scope/pkg" of a bare import specifier. */
export const packageOf = (spec) => spec.split('/', spec.startsWith('@') ? 2 : 1).join('/');

/** Every service's entry: dist/services/<name>/main.js of each folder that has one (not common/, not chunks/). */
export const serviceEntries = (servicesDir) =>
  readdirSync(servicesDir, { withFileTypes: true })
    .map((d) => path.join(servicesDir, d.name, 'main.js'))
    .filter((main) => existsSync(main));

/** Bundles `entries` in place under `base`, their shared code in `base`/chunks/. */
const bundle = (base, entries) =>
  build({
    entryPoints: entries,
    outdir: base,
    outbase: base,
    entryNames: '[dir]/[name]',
    chunkNames: 'chunks/[name]-[hash]',
    allowOverwrite: true,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'warning',
    plugins: [
      {
        name: 'bundle-only-listed-packages',
        setup(b) {
          b.onResolve({ filter: /^[^./]/ }, (args) => {
            if (args.path.startsWith('node:')) return { path: args.path, external: true };
            return BUNDLED.has(packageOf(args.path)) ? undefined : { path: args.path, external: true };
          });
        },
      },
    ],
  });

// Run as a script (make build); imported, it only lends the lists above (test/e2e/bundle.test.ts).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  // Two bundles: the services share chunks among themselves only (dist/services/chunks/), so that a
  // service still needs to read nothing outside dist/services (its --allow-fs-read and sandbox grants)
  // and never loads the gateway's code.
  const servicesDir = path.join(dist, 'services');
  await bundle(dist, [path.join(dist, 'src', 'cli', 'main.js')]);
  await bundle(servicesDir, serviceEntries(servicesDir));
}
