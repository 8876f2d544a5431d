/**
 * Entry point of the fs service: `node [permission flags] dist/services/fs/main.js --root ...`.
 * See services/README.md for the flags and the exact sandboxed launch line.
 */
import { existsSync } from 'node:fs';
import { UsageError, helpText } from '../common/args.js';
import { createLogger } from '../common/log.js';
import { sandboxProblems } from '../common/sandbox.js';
import { exitUsage, runService } from '../common/serve.js';
import { FS_FLAGS, parseFsConfig } from './config.js';
import type { FsConfig } from './config.js';
import { VirtualTree } from './paths.js';
import { fsInstructions, fsTools } from './tools.js';

const SERVICE = 'micro-mcp-fs';
const VERSION = '0.1.0';

let cfg: FsConfig;
try {
  cfg = parseFsConfig(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) exitUsage(SERVICE, e.message);
  throw e;
}
if (cfg.help) {
  process.stdout.write(
    helpText('Usage: node --experimental-permission --allow-fs-read=... dist/services/fs/main.js --root DIR | --root NAME=DIR ... [flags]', FS_FLAGS),
  );
  process.exit(0);
}
const logger = createLogger('fs');
const problems = sandboxProblems(
  cfg.roots.map((r) => r.dir),
  { procFd: true },
);
if (problems.length > 0) {
  if (cfg.sandboxCheck) exitUsage(SERVICE, `refusing to start: ${problems.join('; ')} (or pass --no-sandbox-check for development)`);
  logger.log('warn', 'sandbox check skipped', { problems: problems.length });
}
// Directories are opened relative to their opened parent through /proc/self/fd (paths.ts OpenDir).
if (!existsSync('/proc/self/fd')) exitUsage(SERVICE, 'refusing to start: /proc/self/fd is not available (Linux with /proc mounted, and readable)');
const tree = new VirtualTree(cfg.roots);
const instructions = fsInstructions(tree, cfg);
if (cfg.check) {
  process.stdout.write(
    `${JSON.stringify({ status: 'ok', service: SERVICE, roots: cfg.roots.map((r) => r.name || '/'), sandboxed: problems.length === 0, credentials: cfg.credential.mode })}\n`,
  );
  process.exit(0);
}
await runService({
  name: SERVICE,
  version: VERSION,
  instructions,
  tools: fsTools(tree, cfg),
  logger,
  credential: cfg.credential,
  ...(cfg.httpPort !== undefined ? { httpPort: cfg.httpPort } : {}),
});
