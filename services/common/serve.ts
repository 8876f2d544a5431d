/**
 * Serving an MCP service: stdio by default (both protocol eras, via `serveStdio`), or Streamable
 * HTTP on 127.0.0.1 (`createMcpHandler` + `toNodeHandler` on node:http) with Host-header validation
 * and a `/healthz` endpoint. One factory builds a fresh McpServer per connection or request.
 * Before serving, the gateway-credential check is installed in the guard every tool call passes.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { McpServer, createMcpHandler } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { toNodeHandler, localhostHostValidation } from '@modelcontextprotocol/node';
import { registerTools } from './tool.js';
import type { ToolDef } from './tool.js';
import type { Logger } from './log.js';
import { createCredentialVerifier, credentialFromAuthorization, guardWith } from './credential.js';
import type { CredentialSetup } from './credential-config.js';
import { setCredentialVerifier } from './guard.js';

/** What a service hands to `runService`. */
export interface ServiceSpec {
  name: string;
  version: string;
  /** Returned as the server's `instructions`; also serves as the health summary. */
  instructions: string;
  tools: readonly ToolDef<never>[];
  logger: Logger;
  /** Streamable HTTP port on 127.0.0.1 (0 = ephemeral); undefined = stdio. */
  httpPort?: number;
  /** The credential check every tool call must pass (services/common/credential-config.ts). */
  credential: CredentialSetup;
}

/** Installs the process-wide credential check; an explicit opt-out is logged loudly. */
function installCredentialCheck(setup: CredentialSetup, logger: Logger): void {
  if (setup.mode === 'insecure') {
    logger.log('warn', 'CREDENTIAL CHECK DISABLED (--insecure-no-credentials): any caller that reaches this service can use it; development only');
    setCredentialVerifier(() => true);
    return;
  }
  setCredentialVerifier(guardWith(createCredentialVerifier(setup.options)));
  logger.log('info', 'credential check on', { keys: setup.options.jwksFile ? 'file' : 'url' });
}

/** Builds one McpServer with the service's tools (the factory both transports call). */
export function buildServer(spec: ServiceSpec): McpServer {
  // A service with no tools (a connector not configured yet) declares no tools capability, so the
  // gateway lists nothing for it rather than asking for a list the server cannot answer.
  const server = new McpServer(
    { name: spec.name, version: spec.version },
    { capabilities: spec.tools.length > 0 ? { tools: { listChanged: false } } : {}, instructions: spec.instructions },
  );
  registerTools(server, spec.tools, spec.logger);
  return server;
}

/** Starts the service on stdio or HTTP; resolves once it is serving. Returns the HTTP server if any. */
export async function runService(spec: ServiceSpec): Promise<HttpServer | undefined> {
  installCredentialCheck(spec.credential, spec.logger);
  const factory = () => buildServer(spec);
  if (spec.httpPort === undefined) {
    serveStdio(factory, { onerror: (e) => spec.logger.log('warn', 'stdio transport error', { error: e.name }) });
    spec.logger.log('info', 'serving on stdio');
    return undefined;
  }
  const handler = createMcpHandler(factory, { onerror: (e) => spec.logger.log('debug', 'mcp handler error', { error: e.name }) });
  const node = toNodeHandler(handler, { maxRequestBodySize: 1024 * 1024 });
  const validateHost = localhostHostValidation(); // DNS-rebinding protection for a loopback listener
  const http = createServer((req, res) => {
    if (!validateHost(req, res)) return;
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', service: spec.name }));
      return;
    }
    if (path !== '/mcp') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    // Remote mode: the gateway sends the per-call credential as `Authorization: Bearer`; the node
    // adapter hands `req.auth` to the handlers as authInfo, where guardWith finds it.
    const token = credentialFromAuthorization(req.headers.authorization);
    if (token !== undefined)
      (req as IncomingMessage & { auth?: { token: string; clientId: string; scopes: string[] } }).auth = { token, clientId: '', scopes: [] };
    void node(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(spec.httpPort, '127.0.0.1', () => resolve());
  });
  const addr = http.address();
  const port = typeof addr === 'object' && addr ? addr.port : spec.httpPort;
  spec.logger.log('info', 'serving Streamable HTTP', { address: `127.0.0.1:${port}`, path: '/mcp' });
  return http;
}

/** Standard exit for usage errors: a clear message on stderr, status 2. */
export function exitUsage(service: string, message: string): never {
  process.stderr.write(`${service}: ${message}\n`);
  process.exit(2);
}
