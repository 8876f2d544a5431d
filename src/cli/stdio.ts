/**
 * `micro-mcp stdio`: the same catalog for one local client over stdin/stdout. There is no HTTP and
 * no token on stdio: the one local client acts as the principal configured under `stdio.principal`,
 * with its own audit chain (`stdio.audit_file`) so it can run beside `serve`.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { buildServer } from '../mcp-face/server.js';
import type { CallContext } from '../pipeline/ports.js';
import type { Principal } from '../types.js';
import { startCore } from './core.js';
import { Lifecycle, StopRequested } from './lifecycle.js';
import { makeRunDir, parseCommon, resolveConfigPath } from './serve.js';

export async function stdioCommand(argv: string[]): Promise<number> {
  const life = new Lifecycle({ onSignalStopped: () => process.exit(0), report: (line) => process.stderr.write(`${line}\n`) });
  try {
    await serveStdioOn(life, parseCommon(argv));
  } catch (e) {
    await life.stop('start-up failed');
    if (e instanceof StopRequested) return -1;
    throw e;
  }
  // The client closing stdin ends the session like a signal does.
  process.stdin.once('end', () => void life.stop('stdin closed').then(() => process.exit(0)));
  return -1;
}

async function serveStdioOn(life: Lifecycle, v: ReturnType<typeof parseCommon>): Promise<void> {
  const runDir = await life.acquire('runtime folder', makeRunDir(), (d) => rmSync(d, { recursive: true, force: true }));
  const config = loadConfig(resolveConfigPath(v), { runDir });
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
  const core = await startCore(own, { dev: true, drainMs: config.server.shutdown_grace_ms }, life);
  const servers = new Set<ReturnType<typeof buildServer>>();
  await life.acquire(
    'stdio face',
    serveStdio(({ era }) => {
      const server = buildServer(
        {
          calls: core.calls,
          lists: core.lists,
          state: core.state,
          probes: core.probes,
          subscriptions: core.subscriptions,
          contextOf: (ctx): CallContext => ({
            principal,
            era,
            sessionId: null,
            requestId: `stdio-${String(ctx.mcpReq.id)}-${randomUUID().slice(0, 8)}`,
            clientIp: null,
          }),
        },
        { subscriptions: era === 'legacy' },
      );
      servers.add(server);
      return server;
    }),
    (h) => h.close(),
  );
  // A 2025-era stdio client hears list changes as notifications on its connection.
  core.catalog.on('listChanged', (kind) => {
    for (const s of servers) {
      const sent = kind === 'tools' ? s.sendToolListChanged() : kind === 'prompts' ? s.sendPromptListChanged() : s.sendResourceListChanged();
      void Promise.resolve(sent).catch(() => undefined);
    }
  });
}
