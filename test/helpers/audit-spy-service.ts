/**
 * A tiny real MCP service (SDK v2, stdio) for the audit end-to-end tests. It writes down the
 * per-call credential the gateway hands it, so the test can prove that credential never reaches
 * the audit trail or the gateway's output, and it ends calls in the ways an outcome record must
 * tell apart (tool error, service error).
 *
 *   node audit-spy-service.js --out FILE
 */
import { appendFileSync } from 'node:fs';
import { Server } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { Tool } from '@modelcontextprotocol/server';
import { CREDENTIAL_META_KEY } from '../../schemas/contracts/service-credential.js';

const outIdx = process.argv.indexOf('--out');
const out = outIdx > 0 ? process.argv[outIdx + 1] : undefined;

// Open schemas: the tests pass secret-looking arguments that the audit log must redact.
const open = { type: 'object' as const, properties: {}, additionalProperties: true };
const TOOLS: Tool[] = [
  {
    name: 'keep',
    description: 'Write down the credential of this call; answer "kept"',
    inputSchema: open,
    annotations: { readOnlyHint: true, openWorldHint: false },
  },
  { name: 'fail', description: 'Answer with a tool error (isError)', inputSchema: open, annotations: { readOnlyHint: true, openWorldHint: false } },
  { name: 'boom', description: 'Answer with a JSON-RPC error', inputSchema: open, annotations: { readOnlyHint: true, openWorldHint: false } },
];

function build(): Server {
  const server = new Server({ name: 'audit-spy', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler('tools/list', async () => ({ tools: TOOLS }));
  server.setRequestHandler('tools/call', async (req, ctx) => {
    const meta = (ctx.mcpReq._meta ?? {}) as Record<string, unknown>;
    const credential = meta[CREDENTIAL_META_KEY];
    if (out && typeof credential === 'string') appendFileSync(out, `${credential}\n`);
    switch (req.params.name) {
      case 'keep':
        return { content: [{ type: 'text' as const, text: 'kept' }] };
      case 'fail':
        return { content: [{ type: 'text' as const, text: 'the tool failed' }], isError: true };
      case 'boom':
        throw new Error('spy service exploded');
      default:
        return { content: [{ type: 'text' as const, text: 'unknown tool' }], isError: true };
    }
  });
  return server;
}

serveStdio(() => build());
