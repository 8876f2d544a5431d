/**
 * Entry point of the github connector: `node [permission flags] dist/services/github/main.js
 * --base-url URL --token-env NAME [flags]`. See services/README.md "github".
 */
import { UsageError, helpText } from '../common/args.js';
import { createLogger } from '../common/log.js';
import { sandboxProblems } from '../common/sandbox.js';
import { exitUsage, runService } from '../common/serve.js';
import { GithubClient } from './client.js';
import { GITHUB_FLAGS, parseGithubConfig } from './config.js';
import type { GithubConfig } from './config.js';
import { githubInstructions, githubTools } from './tools.js';

const SERVICE = 'micro-mcp-github';
const VERSION = '0.1.0';

let cfg: GithubConfig;
try {
  cfg = parseGithubConfig(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) exitUsage(SERVICE, e.message);
  throw e;
}
if (cfg.help) {
  process.stdout.write(
    helpText(
      'Usage: node --experimental-permission --allow-fs-read=... dist/services/github/main.js --base-url URL (--token-env NAME | --token-file FILE) [flags]',
      GITHUB_FLAGS,
    ),
  );
  process.exit(0);
}
const logger = createLogger('github');
if (cfg.test) logger.log('warn', 'TEST HOOKS ENABLED: fake resolver, connections limited to loopback; never use in production');
if (cfg.api === undefined) logger.log('warn', `github connector disabled: ${cfg.disabledBecause ?? 'not configured'}; it serves no tools until they are set`);
const problems = sandboxProblems([]);
if (problems.length > 0) {
  if (cfg.sandboxCheck) exitUsage(SERVICE, `refusing to start: ${problems.join('; ')} (or pass --no-sandbox-check for development)`);
  logger.log('warn', 'sandbox check skipped', { problems: problems.length });
}
const instructions = githubInstructions(cfg);
if (cfg.check) {
  process.stdout.write(
    `${JSON.stringify({ status: 'ok', service: SERVICE, enabled: cfg.api !== undefined, host: cfg.api?.base.host ?? null, writes: cfg.allowCreateIssue, sandboxed: problems.length === 0, credentials: cfg.credential.mode })}\n`,
  );
  process.exit(0);
}
await runService({
  name: SERVICE,
  version: VERSION,
  instructions,
  tools: githubTools(cfg.api === undefined ? undefined : new GithubClient(cfg.api, cfg), cfg),
  logger,
  credential: cfg.credential,
  ...(cfg.httpPort !== undefined ? { httpPort: cfg.httpPort } : {}),
});
