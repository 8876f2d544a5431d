/**
 * The benchmark's service: an `echo` tool and a `read` tool (a path argument, answered with the
 * path: the gateway mounts it as `fs` so the fs policies decide on a new path every call, while
 * the service does no disk I/O that would hide the gateway's cost). The same code is served over
 * stdio (what the gateway and mcp-proxy attach, and the "direct over stdio" floor) or over
 * Streamable HTTP on loopback (the "direct over HTTP" path): 2026-07-28 through the SDK's
 * createMcpHandler, 2025 with real sessions (one sessionful transport per client), as a 2025
 * deployment serves them; the stateless fallback would make the direct 2025 rows too cheap.
 *
 *   node bench-service.js            stdio (both eras)
 *   node bench-service.js --http     127.0.0.1, ephemeral port; prints "bench-service listening on <url>"
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, isLegacyRequest, Server, WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { toNodeHandler } from '@modelcontextprotocol/node';

const TOOLS = [
  {
    name: 'echo',
    description: 'Echo the text back',
    inputSchema: { type: 'object' as const, properties: { text: { type: 'string' } }, required: ['text'], additionalProperties: false },
    annotations: { readOnlyHint: true },
  },
  {
    name: 'read',
    description: 'Answer with the path it was given (no disk I/O)',
    inputSchema: { type: 'object' as const, properties: { path: { type: 'string' } }, required: ['path'], additionalProperties: false },
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
];

/** One server instance; the HTTP entry builds one per request, stdio one per connection. */
function build(): Server {
  const server = new Server({ name: 'bench-service', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler('tools/list', async () => ({ tools: TOOLS }) as never);
  server.setRequestHandler('tools/call', async (req) => {
    const args = req.params.arguments as { text?: unknown; path?: unknown } | undefined;
    if (req.params.name === 'echo') return { content: [{ type: 'text' as const, text: String(args?.text ?? '') }] };
    if (req.params.name === 'read') return { content: [{ type: 'text' as const, text: String(args?.path ?? '') }] };
    return { content: [{ type: 'text' as const, text: 'unknown tool' }], isError: true };
  });
  return server;
}

if (process.argv.includes('--http')) {
  // 2026-07-28: the SDK's entry with its defaults ('auto' responses), as the gateway's modern face.
  const handler = createMcpHandler(() => build(), { legacy: 'reject' });
  // 2025: a session per client (initialize opens one), routed as the SDK's isLegacyRequest documents.
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
  const legacy = async (req: Request, parsedBody: unknown): Promise<Response> => {
    const sid = req.headers.get('mcp-session-id');
    if (sid !== null) {
      const t = sessions.get(sid);
      return t ? t.handleRequest(req, { parsedBody }) : new Response('unknown session', { status: 404 });
    }
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await build().connect(transport);
    return transport.handleRequest(req, { parsedBody });
  };
  const listener = toNodeHandler({
    // The body is parsed once here and handed to whichever leg serves it (neither reads it again).
    fetch: async (req: Request) => {
      let parsed: unknown;
      if (req.method === 'POST') {
        try {
          parsed = JSON.parse(await req.text());
        } catch {
          return new Response('invalid JSON', { status: 400 });
        }
      }
      if (await isLegacyRequest(req, parsed)) return legacy(req, parsed);
      return handler.fetch(req, { parsedBody: parsed });
    },
  });
  const http = createServer((req, res) => void listener(req, res));
  http.keepAliveTimeout = 60_000;
  http.listen(0, '127.0.0.1', () => {
    const { port } = http.address() as AddressInfo;
    process.stdout.write(`bench-service listening on http://127.0.0.1:${port}/mcp\n`);
  });
  const stop = () => {
    http.closeAllConnections();
    http.close();
    void handler.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} else {
  serveStdio(() => build());
}
