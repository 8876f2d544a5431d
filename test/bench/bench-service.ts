/**
 * The benchmark's service: one `echo` tool, the same code served over stdio (what the gateway
 * attaches, the common deployment) or over Streamable HTTP on loopback (what the "direct" client
 * calls), so both measurements run the same tool code in the same kind of process.
 *
 *   node bench-service.js            stdio (both eras)
 *   node bench-service.js --http     127.0.0.1, ephemeral port; prints "bench-service listening on <url>"
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, Server } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { toNodeHandler } from '@modelcontextprotocol/node';

const TOOLS = [
  {
    name: 'echo',
    description: 'Echo the text back',
    inputSchema: { type: 'object' as const, properties: { text: { type: 'string' } }, required: ['text'], additionalProperties: false },
    annotations: { readOnlyHint: true },
  },
];

/** One server instance; the HTTP entry builds one per request, stdio one per connection. */
function build(): Server {
  const server = new Server({ name: 'bench-service', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler('tools/list', async () => ({ tools: TOOLS }) as never);
  server.setRequestHandler('tools/call', async (req) => {
    if (req.params.name !== 'echo') return { content: [{ type: 'text' as const, text: 'unknown tool' }], isError: true };
    const text = String((req.params.arguments as { text?: unknown } | undefined)?.text ?? '');
    return { content: [{ type: 'text' as const, text }] };
  });
  return server;
}

if (process.argv.includes('--http')) {
  // The SDK defaults, as the gateway's own modern face uses them ('auto' responses, stateless legacy leg).
  const handler = createMcpHandler(() => build());
  const listener = toNodeHandler(handler);
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
