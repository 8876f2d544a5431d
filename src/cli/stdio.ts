/**
 * `micro-mcp stdio`: the same catalog for one local client over stdin/stdout. There is no HTTP and
 * no token on stdio: the one local client acts as the principal configured under `stdio.principal`,
 * with its own audit chain (`stdio.audit_file`) so it can run beside `serve`.
 */
import { randomUUID } from 'node:crypto';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { buildServer } from '../mcp-face/server.js';
import type { CallContext } from '../pipeline/ports.js';
import type { Principal } from '../types.js';
import { startCore } from './core.js';
import { parseCommon, resolveConfigPath } from './serve.js';

export async function stdioCommand(argv: string[]): Promise<number> {
  const config = loadConfig(resolveConfigPath(parseCommon(argv)));
  const section = config.stdio ?? {};
  const p = section.principal ?? {};
  const principal: Principal = Object.freeze({
    id: p.id ?? `local:${process.env.USER ?? 'user'}`,
    type: p.type ?? 'user',
    issuer: 'urn:micro-mcp:local',
    groups: p.groups ?? [],
    attributes: p.attributes ?? {},
    scopes: p.scopes ?? [],
    client: { id: 'stdio' },
    purpose: p.purpose ?? null,
    purposes: p.purposes ?? [],
  });
  const own: Config = section.audit_file ? { ...config, audit: { ...(config.audit ?? {}), file: section.audit_file } } : config;
  const core = await startCore(own, { dev: true });
  const servers = new Set<ReturnType<typeof buildServer>>();
  const handle = serveStdio(({ era }) => {
    const server = buildServer({
      calls: core.calls,
      lists: core.lists,
      state: core.state,
      contextOf: (ctx): CallContext => ({
        principal,
        era,
        sessionId: null,
        requestId: `stdio-${String(ctx.mcpReq.id)}-${randomUUID().slice(0, 8)}`,
        clientIp: null,
      }),
    });
    servers.add(server);
    return server;
  });
  // A 2025-era stdio client hears list changes as notifications on its connection.
  core.catalog.on('listChanged', (kind) => {
    for (const s of servers) {
      const sent = kind === 'tools' ? s.sendToolListChanged() : kind === 'prompts' ? s.sendPromptListChanged() : s.sendResourceListChanged();
      void Promise.resolve(sent).catch(() => undefined);
    }
  });
  const stop = async () => {
    await handle.close().catch(() => undefined);
    await core.audit.close().catch(() => undefined);
    await core.stop();
    process.exit(0);
  };
  process.stdin.once('end', () => void stop());
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  return -1;
}
