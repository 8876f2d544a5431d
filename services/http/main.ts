/**
 * Entry point of the http service: `node [permission flags] dist/services/http/main.js --allow-host ...`.
 * See services/README.md for the flags and the sandboxed launch line.
 */
import { UsageError, helpText } from '../common/args.js';
import { createLogger } from '../common/log.js';
import { sandboxProblems } from '../common/sandbox.js';
import { exitUsage, runService } from '../common/serve.js';
import { HTTP_FLAGS, parseHttpConfig } from './config.js';
import type { HttpConfig } from './config.js';
import { GuardedFetcher } from './fetch.js';
import { httpInstructions, httpTools } from './tools.js';

const SERVICE = 'micro-mcp-http';
const VERSION = '0.1.0';

let cfg: HttpConfig;
try {
  cfg = parseHttpConfig(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) exitUsage(SERVICE, e.message);
  throw e;
}
if (cfg.help) {
  process.stdout.write(
    helpText('Usage: node --experimental-permission --allow-fs-read=... dist/services/http/main.js --allow-host HOST ... [flags]', HTTP_FLAGS),
  );
  process.exit(0);
}
const logger = createLogger('http');
if (cfg.test) logger.log('warn', 'TEST HOOKS ENABLED: fake resolver, connections limited to loopback; never use in production');
const problems = sandboxProblems([]);
if (problems.length > 0) {
  if (cfg.sandboxCheck) exitUsage(SERVICE, `refusing to start: ${problems.join('; ')} (or pass --no-sandbox-check for development)`);
  logger.log('warn', 'sandbox check skipped', { problems: problems.length });
}
const instructions = httpInstructions(cfg);
if (cfg.check) {
  process.stdout.write(
    `${JSON.stringify({ status: 'ok', service: SERVICE, hosts: cfg.allow.length, sandboxed: problems.length === 0, credentials: cfg.credential.mode })}\n`,
  );
  process.exit(0);
}
await runService({
  name: SERVICE,
  version: VERSION,
  instructions,
  tools: httpTools(new GuardedFetcher(cfg), cfg),
  logger,
  credential: cfg.credential,
  ...(cfg.httpPort !== undefined ? { httpPort: cfg.httpPort } : {}),
});
