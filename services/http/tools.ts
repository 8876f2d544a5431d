/**
 * The http tool: fetchText {url, method?, max_bytes?} over the GuardedFetcher.
 */
import type { ToolDef } from '../common/tool.js';
import type { HttpConfig } from './config.js';
import type { GuardedFetcher } from './fetch.js';

/** Builds the fetchText tool. */
export function httpTools(fetcher: GuardedFetcher, cfg: HttpConfig): ToolDef<never>[] {
  const fetchText: ToolDef<{ url: string; method?: 'GET' | 'HEAD'; max_bytes?: number }> = {
    name: 'fetchText',
    title: 'Fetch a text URL',
    description: `Fetch a URL from an allowed host with GET or HEAD and return its text (HTML is converted to readable text). ${cfg.allowHttp ? 'http and https' : 'https only'}; at most ${cfg.maxBytes} bytes, ${cfg.timeoutMs} ms and ${cfg.maxRedirects} redirects; only text content types.`,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    inputSchema: {
      type: 'object',
      properties: {
        url: { type: 'string', minLength: 1, maxLength: 8192, description: 'Absolute URL on an allowed host.' },
        method: { enum: ['GET', 'HEAD'], description: 'GET (default) or HEAD.' },
        max_bytes: { type: 'integer', minimum: 1, maximum: cfg.maxBytes, description: `Body bytes to return (default and maximum ${cfg.maxBytes}).` },
      },
      required: ['url'],
      additionalProperties: false,
    },
    outputSchema: {
      type: 'object',
      properties: {
        url: { type: 'string' },
        status: { type: 'integer' },
        content_type: { type: 'string' },
        bytes: { type: 'integer' },
        truncated: { type: 'boolean' },
        redirects: { type: 'integer' },
        text: { type: 'string' },
      },
      required: ['url', 'status', 'content_type', 'bytes', 'truncated', 'redirects', 'text'],
      additionalProperties: false,
    },
    async handler(args, _ctx, grant) {
      const r = await fetcher.fetchText(args.url, args.method ?? 'GET', args.max_bytes ?? cfg.maxBytes, grant.reach);
      const head = `HTTP ${r.status} ${r.content_type}${r.truncated ? ' (truncated)' : ''}${r.redirects ? `, after ${r.redirects} redirect(s)` : ''}`;
      return { text: args.method === 'HEAD' ? head : `${head}\n\n${r.text}`, structured: { ...r } };
    },
  };
  return [fetchText] as ToolDef<never>[];
}

/** The health summary exposed as the server's instructions and by --check. */
export function httpInstructions(cfg: HttpConfig): string {
  return `micro-mcp http service (read-only): tool fetchText (GET/HEAD) for ${cfg.allow.length} allowlisted host pattern(s); ${cfg.allowHttp ? 'http and https' : 'https only'}; ports ${[...cfg.ports].sort((a, b) => a - b).join(', ')}. Private, loopback, link-local and metadata addresses are refused. status: ok`;
}
