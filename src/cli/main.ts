#!/usr/bin/env node
/**
 * The `micro-mcp` command.
 *
 *   micro-mcp serve [--config FILE] [--dev] [--port N] [--host H]
 *   micro-mcp stdio [--config FILE] [--dev]
 *   micro-mcp token --sub alice --groups eng --scopes "fs:read http:fetch" --ttl 15m [--purpose P] [--aud URI]
 *   micro-mcp policy build|test|check|explain ...
 *   micro-mcp audit verify FILE...
 *   micro-mcp config check [--config FILE]
 *   micro-mcp vector index DIR [--collection NAME] [--store DIR]
 *   micro-mcp tools list | diff SERVICE.TOOL | approve SERVICE.TOOL [--config FILE]
 */
// First: V8's settings for the WASM engines, before any module loads one. The engines import it
// too, but in the bundled command (bin/bundle.mjs) an engine's import of its WASM package is
// evaluated before the engine's own code, so only an import from here comes first.
import '../policy/wasm-guard.js';
import { installAbortSignalAny } from '../abort-signal-any.js';
import { isGatewayError } from '../errors.js';

// Before any SDK client exists: Node 20's AbortSignal.any leaks per request (src/abort-signal-any.ts).
installAbortSignalAny();

const USAGE = `usage: micro-mcp <command> [options]

commands:
  serve   [--config FILE | --dev] [--host H] [--port N]   start the gateway (HTTP /mcp)
  stdio   [--config FILE | --dev]                         serve the same catalog over stdio
  token   --sub ID [--groups "a b"] [--scopes "x y"] [--ttl 15m] [--purpose P] [--aud URI]
                                                          mint a dev token (dev key, loopback only)
  policy  build|test|check|explain ...                    policy tooling (micro-mcp policy --help)
  audit   verify FILE...                                  verify the audit hash chain
  config  check [--config FILE | --dev]                   validate a config file
  vector  index DIR [--collection NAME] [--store DIR]     build a vector collection from a folder of text files
  tools   list | diff S.TOOL | approve S.TOOL [--config FILE]
                                                          pinned tool definitions: see and approve a changed one
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return (await import('./serve.js')).serveCommand(rest);
    case 'stdio':
      return (await import('./stdio.js')).stdioCommand(rest);
    case 'token':
      return (await import('./commands.js')).token(rest);
    case 'policy':
      return (await import('./commands.js')).policy(rest);
    case 'audit':
      return (await import('./commands.js')).audit(rest);
    case 'config':
      return (await import('./commands.js')).config(rest);
    case 'vector':
      return (await import('./vector.js')).vectorCommand(rest);
    case 'tools':
      return (await import('./tools.js')).toolsCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`micro-mcp: unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}

// `micro-mcp audit verify ... | head`: a reader that stops early is not an error; end quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== -1) process.exitCode = code;
  },
  (e: unknown) => {
    // Errors carry no secrets by construction (GatewayError messages never include tokens or arguments).
    const msg = isGatewayError(e) ? `${e.code}: ${e.message}` : (e as Error).message;
    process.stderr.write(`micro-mcp: ${msg}\n`);
    process.exitCode = 1;
  },
);
