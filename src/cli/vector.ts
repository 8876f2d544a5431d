/**
 * `micro-mcp vector index DIR`: builds a vector collection from a folder of text files. It runs the
 * vector service's own `--index` mode (dist/services/vector/main.js) as a child process instead of
 * importing it: src/ and services/ never import each other, and the collection file is the service's
 * private format, so only the service reads and writes it (a new format needs no gateway change).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PACKAGE_ROOT } from '../config/load.js';

const USAGE = `usage:
  micro-mcp vector index DIR [--collection NAME] [--store DIR] [--embedder local|openai]
                             [--embed-url URL --embed-model MODEL (--embed-key-env NAME | --embed-key-file FILE)]
                             [--max-files N] [--max-file-bytes N] [--max-doc-chars N]
      builds the collection (default: named after DIR, stored in .dev/vector/<collection>) that the vector
      service serves with the same --collection, --store and embedder flags; see services/README.md "vector"
`;

/** The flags passed on to the service as they are. */
const PASS_ON = [
  'embedder',
  'embed-url',
  'embed-model',
  'embed-key-env',
  'embed-key-file',
  'embed-timeout-ms',
  'max-files',
  'max-file-bytes',
  'max-doc-chars',
] as const;

export function vectorCommand(argv: string[]): number {
  const [sub, ...rest] = argv;
  if (sub !== 'index') {
    process.stderr.write(sub === undefined || sub === '--help' ? USAGE : `micro-mcp vector: unknown subcommand "${sub}"\n${USAGE}`);
    return sub === '--help' ? 0 : 2;
  }
  let parsed: ReturnType<typeof parseArgs<{ options: Record<string, { type: 'string' }>; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({
      args: rest,
      options: Object.fromEntries(['collection', 'store', ...PASS_ON].map((f) => [f, { type: 'string' as const }])),
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    process.stderr.write(`micro-mcp vector index: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write(`micro-mcp vector index: give exactly one folder\n${USAGE}`);
    return 2;
  }
  const dir = path.resolve(parsed.positionals[0]!);
  const collection = parsed.values.collection ?? path.basename(dir).toLowerCase();
  const store = path.resolve(parsed.values.store ?? path.join(PACKAGE_ROOT, '.dev', 'vector', collection));
  const args = [path.join(PACKAGE_ROOT, 'dist', 'services', 'vector', 'main.js'), '--index', dir, '--collection', collection, '--store', store];
  for (const f of PASS_ON) if (parsed.values[f] !== undefined) args.push(`--${f}=${parsed.values[f]}`);
  // The service checks every flag itself (exit 2 with the reason) and prints one JSON line when done.
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: process.env });
  return r.status ?? 1;
}
