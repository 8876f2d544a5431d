/** What `make run` prints in development mode: how to mint a token and connect a client. */
import type { Config } from '../config/types.js';

/**
 * The MCP Inspector release the connect lines name: every release with --server-url and --header
 * declares Node >= 22 (an unpinned npx on Node 20 picks 0.15.0, which has neither); this one's CLI
 * and web UI were checked on Node 20 (README "Connect").
 */
export const INSPECTOR_VERSION = '2.12.0';

export function printDevHelp(url: string, config: Config): void {
  const services = Object.keys(config.services).join(', ');
  // A service's description is its one-line note for the operator (the github connector's: how to enable it).
  const notes = Object.entries(config.services)
    .filter(([, s]) => typeof s.description === 'string' && s.description !== '')
    .map(([name, s]) => `  ${name}: ${s.description}`);
  process.stdout.write(
    [
      '',
      'DEVELOPMENT MODE: loopback only, tokens signed by the local dev key in .dev/keys (never use this on a network).',
      `Services: ${services}`,
      ...notes,
      '',
      'Mint a token and connect an MCP client:',
      `  TOKEN=$(node dist/src/cli/main.js token --sub alice --groups eng --scopes "fs:read http:fetch vector:read github:read" --ttl 15m --aud ${url}/mcp)`,
      `  npx -y @modelcontextprotocol/inspector@${INSPECTOR_VERSION} --cli --transport http --server-url ${url}/mcp --header "Authorization: Bearer $TOKEN" --method tools/list`,
      '  (the web UI: the same without --cli and --method)',
      '',
      'Or let an OAuth-capable client log in by itself (dev authorization server, auto-approved as the dev user):',
      `  ${url}/.well-known/oauth-authorization-server`,
      '',
      'Or by hand:',
      `  curl -s ${url}/mcp -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
      `       -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/list' \\`,
      `       -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}'`,
      '',
    ].join('\n'),
  );
}
