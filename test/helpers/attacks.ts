/**
 * Helpers for the end-to-end attack and service-credential tests: gateway service entries that
 * launch the REAL fs and http services exactly as src/config/examples/dev.yaml does (in their
 * bubblewrap sandbox, under Node's permission model, read access to the code, the roots and the
 * gateway's run dir holding the credential JWKS),
 * a test-only policy dir derived from the shipped one, and a classifier for call outcomes.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { ROOT } from './harness.js';
import { toolErrorOf } from '../corpora/harness.js';
import { addPurposeHosts, FS_RESOURCE, HTTP_RESOURCE } from './policy.js';

/** The --allow-fs-read flags every sandboxed service needs for its own code (services/README.md). */
export function codeReadFlags(): string[] {
  return [
    path.join(ROOT, 'dist', 'services'),
    path.join(ROOT, 'dist', 'schemas', 'contracts'),
    path.join(ROOT, 'node_modules'),
    path.join(ROOT, 'package.json'),
  ].map((p) => `--allow-fs-read=${p}`);
}

/**
 * The gateway's entry for the sandboxed fs service over `rootDirs` (`--root` flags in `rootFlags`).
 * ${MICRO_MCP_RUN_DIR} is expanded by the gateway's config loader: the JWKS file lives there.
 */
export function fsServiceEntry(rootFlags: string[], rootDirs: string[], extraArgs: string[] = []): Record<string, unknown> {
  return {
    transport: 'stdio',
    command: 'node',
    args: [
      '--experimental-permission',
      ...codeReadFlags(),
      ...rootDirs.map((d) => `--allow-fs-read=${d}`),
      // Directories are read through their open handles (services/fs/paths.ts OpenDir).
      '--allow-fs-read=/proc/self/fd',
      '--allow-fs-read=${MICRO_MCP_RUN_DIR}',
      path.join(ROOT, 'dist', 'services', 'fs', 'main.js'),
      ...rootFlags,
      ...extraArgs,
    ],
    // The OS sandbox (on by default): the roots are its only data; no network.
    sandbox: { read: rootDirs },
    resource: FS_RESOURCE,
  };
}

/** The gateway's entry for the sandboxed http service; test flags need MICRO_MCP_HTTP_TEST_HOOKS=1 in `env`. */
export function httpServiceEntry(args: string[], env: Record<string, string> = {}): Record<string, unknown> {
  return {
    transport: 'stdio',
    command: 'node',
    args: [
      '--experimental-permission',
      ...codeReadFlags(),
      '--allow-fs-read=${MICRO_MCP_RUN_DIR}',
      path.join(ROOT, 'dist', 'services', 'http', 'main.js'),
      ...args,
    ],
    env,
    // The OS sandbox (on by default): the network, no data.
    sandbox: { network: true },
    resource: HTTP_RESOURCE,
  };
}

/** The loopback hosts of the test-only `local-dev` purpose (the shipped policies have no such purpose). */
export const LOCAL_DEV_HOSTS = ['127.0.0.1', 'localhost'];

/**
 * A TEST-ONLY copy of the shipped policies in a temp dir with one addition: purpose `local-dev` (which
 * the shipped policies no longer have) may reach the loopback hosts. A token that binds it is granted it.
 */
export function shippedPolicyDir(): { rego: string; cedar: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-attack-policy-'));
  const p = { rego: path.join(dir, 'rego'), cedar: path.join(dir, 'cedar'), dir };
  cpSync(path.join(ROOT, 'policies', 'rego'), p.rego, { recursive: true });
  cpSync(path.join(ROOT, 'policies', 'cedar'), p.cedar, { recursive: true });
  addPurposeHosts(p, 'local-dev', LOCAL_DEV_HOSTS);
  return p;
}

/**
 * A TEST-ONLY copy of the shipped policies in a temp dir whose purpose `attack-tests` may reach
 * `hosts` over http and whose group `eng` may read every fs path that canonicalises. Everything else
 * (scopes, schemes, methods, invalid paths/URLs, purpose requirement) stays as shipped, so the
 * services' own guards are what the corpora meet behind the policy. Both engines are edited so that
 * they keep agreeing.
 */
export function permissivePolicyDir(hosts: string[]): { rego: string; cedar: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-attack-policy-'));
  const rego = path.join(dir, 'rego');
  const cedar = path.join(dir, 'cedar');
  cpSync(path.join(ROOT, 'policies', 'rego'), rego, { recursive: true });
  cpSync(path.join(ROOT, 'policies', 'cedar'), cedar, { recursive: true });
  const edit = (file: string, from: string, to: string): void => {
    const text = readFileSync(file, 'utf8');
    if (!text.includes(from)) throw new Error(`test policy: "${from}" not found in ${file}; the shipped policy changed`);
    writeFileSync(file, text.replace(from, to));
  };
  addPurposeHosts({ rego, cedar }, 'local-dev', LOCAL_DEV_HOSTS);
  addPurposeHosts({ rego, cedar }, 'attack-tests', hosts);
  // fs: eng may read any canonical path (paths that do not canonicalise stay denied).
  edit(
    path.join(rego, 'fs.rego'),
    '_fs_path_readable(path, roots) if path in roots',
    '_fs_path_readable(path, roots) if path in roots\n\n_fs_path_readable(_, roots) if "/public" in roots',
  );
  // ... and the reach the decision hands the fs service (the readable roots) covers every path.
  edit(path.join(rego, 'fs.rego'), '"eng": {"/eng", "/public"},', '"eng": {"/", "/eng", "/public"},');
  const cedarFile = path.join(cedar, 'policies.cedar');
  edit(cedarFile, '!((principal in MicroMcp::Group::"eng" &&', '!((principal in MicroMcp::Group::"eng") ||\n    (principal in MicroMcp::Group::"eng" &&');
  // Tests beside the policies assert the shipped behaviour; they are not loaded by the gateway but
  // would no longer hold, so drop them from the copy.
  for (const f of ['http_test.rego', 'fs_test.rego']) writeFileSync(path.join(rego, f), 'package micro_mcp.authz_test\n');
  return { rego, cedar, dir };
}

/** How a call through the gateway ended. */
export type Outcome =
  | { kind: 'policy'; message: string; dump: string }
  | { kind: 'service'; code: string; message: string; dump: string }
  | { kind: 'ok'; dump: string }
  | { kind: 'other-error'; message: string; dump: string };

/** Calls `name` and classifies the result: policy denial (JSON-RPC error), service tool error, or success. */
export async function callOutcome(client: Client, name: string, args: Record<string, unknown>, meta?: Record<string, unknown>): Promise<Outcome> {
  try {
    const r = await client.callTool({ name, arguments: args, ...(meta ? { _meta: meta } : {}) });
    const dump = JSON.stringify(r);
    if (r.isError) {
      const err = toolErrorOf(r);
      const text = ((r.content as Array<{ text?: string }> | undefined)?.[0]?.text ?? '').toString();
      return { kind: 'service', code: err?.code ?? 'unknown', message: err?.message ?? text, dump };
    }
    return { kind: 'ok', dump };
  } catch (e) {
    const err = e as { code?: number; message?: string; data?: unknown };
    const dump = JSON.stringify({ code: err.code, message: err.message, data: err.data });
    const data = err.data as { code?: string } | undefined;
    if (data?.code === 'ERR_POLICY_DENIED') return { kind: 'policy', message: err.message ?? '', dump };
    return { kind: 'other-error', message: err.message ?? '', dump };
  }
}

/** Runs `fn` over `items` with at most `width` in flight; results keep the input order. */
export async function inBatches<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

/**
 * Stops a harness gateway and removes its folder. (The harness's own stop() leaves a 15 s timer
 * running, which would hold this test file open that long after its last test.)
 */
export async function stopGateway(gw: { proc: import('node:child_process').ChildProcess; dir: string }): Promise<void> {
  const { proc } = gw;
  if (proc.exitCode === null && proc.signalCode === null) {
    const done = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(killer);
  }
  rmSync(gw.dir, { recursive: true, force: true });
}
