/**
 * Entry point of the vector service: `node [permission flags] dist/services/vector/main.js
 * --collection NAME --store DIR [flags]`, or `--index DIR` to build the collection and exit (what
 * `micro-mcp vector index` runs). See services/README.md "vector".
 */
import { UsageError, helpText } from '../common/args.js';
import { createLogger } from '../common/log.js';
import { sandboxProblems } from '../common/sandbox.js';
import { exitUsage, runService } from '../common/serve.js';
import { VECTOR_FLAGS, parseVectorConfig } from './config.js';
import type { VectorConfig } from './config.js';
import { createEmbedder } from './embedder.js';
import { buildIndex } from './indexer.js';
import { VectorStore } from './store.js';
import { vectorInstructions, vectorTools } from './tools.js';

const SERVICE = 'micro-mcp-vector';
const VERSION = '0.1.0';

let cfg: VectorConfig;
try {
  cfg = parseVectorConfig(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) exitUsage(SERVICE, e.message);
  throw e;
}
if (cfg.help) {
  process.stdout.write(
    helpText(
      'Usage: node --experimental-permission --allow-fs-read=... dist/services/vector/main.js --collection NAME --store DIR [flags]\n       node dist/services/vector/main.js --collection NAME --store DIR --index FOLDER   (build the collection, then exit)',
      VECTOR_FLAGS,
    ),
  );
  process.exit(0);
}
const logger = createLogger('vector');
const embedder = createEmbedder(cfg.embedder);

if (cfg.indexDir !== undefined) {
  // An operator's command, not a server: it writes the store and exits.
  try {
    const report = await buildIndex(cfg, embedder);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(0);
  } catch (e) {
    exitUsage(SERVICE, `index failed: ${e instanceof Error ? e.message : 'error'}`);
  }
}

if (cfg.embedder.kind !== 'local' && cfg.embedder.test)
  logger.log('warn', 'TEST HOOKS ENABLED: fake resolver, connections limited to loopback; never use in production');
const problems = sandboxProblems([cfg.store], cfg.allowWrites ? { writable: [cfg.store] } : {});
if (problems.length > 0) {
  if (cfg.sandboxCheck) exitUsage(SERVICE, `refusing to start: ${problems.join('; ')} (or pass --no-sandbox-check for development)`);
  logger.log('warn', 'sandbox check skipped', { problems: problems.length });
}
let store: VectorStore;
try {
  store = await VectorStore.open(cfg.store, cfg.collection, { id: embedder.id, dims: embedder.dims });
} catch (e) {
  exitUsage(SERVICE, `refusing to start: ${e instanceof Error ? e.message : 'the collection cannot be opened'}`);
}
const instructions = vectorInstructions(store, embedder, cfg);
if (cfg.check) {
  process.stdout.write(
    `${JSON.stringify({ status: 'ok', service: SERVICE, collection: cfg.collection, documents: store.size, embedder: embedder.id, writes: cfg.allowWrites, sandboxed: problems.length === 0, credentials: cfg.credential.mode })}\n`,
  );
  process.exit(0);
}
await runService({
  name: SERVICE,
  version: VERSION,
  instructions,
  tools: vectorTools(store, embedder, cfg),
  logger,
  credential: cfg.credential,
  ...(cfg.httpPort !== undefined ? { httpPort: cfg.httpPort } : {}),
});
