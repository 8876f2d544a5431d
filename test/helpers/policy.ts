/**
 * Helpers for the policy end-to-end tests: sandboxed service launches (as in
 * src/config/examples/dev.yaml), a loopback HTTP origin, policy-tree copies, the `micro-mcp` CLI,
 * and reading a denied call's JSON-RPC error.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from '@modelcontextprotocol/client';
import { CLI, DIST, ROOT } from './harness.js';

/** The sample tree the fs service serves in `make run`. */
export const FS_SAMPLE = path.join(ROOT, 'services', 'fs', 'sample');

/** The resource declarations of the example services, as src/config/examples/dev.yaml writes them. */
export const FS_RESOURCE = { kind: 'path', arg: 'path' };
export const HTTP_RESOURCE = { kind: 'url', arg: 'url', method_arg: 'method' };

/** Reads the service needs to start under Node's permission model (services/README.md). */
const baseReads = () => [
  `--allow-fs-read=${path.join(DIST, 'services')}`,
  `--allow-fs-read=${path.join(DIST, 'schemas', 'contracts')}`,
  `--allow-fs-read=${path.join(ROOT, 'node_modules')}`,
  `--allow-fs-read=${path.join(ROOT, 'package.json')}`,
  // The per-service JWKS the gateway writes for credential checks lives in its run dir.
  '--allow-fs-read=${MICRO_MCP_RUN_DIR}',
];

/** The fs service, sandboxed exactly like the dev config, serving `root` as "/". */
export function fsService(root: string = FS_SAMPLE): Record<string, unknown> {
  return {
    transport: 'stdio',
    command: 'node',
    args: [
      '--experimental-permission',
      ...baseReads(),
      `--allow-fs-read=${root}`,
      '--allow-fs-read=/proc/self/fd',
      path.join(DIST, 'services', 'fs', 'main.js'),
      '--root',
      root,
    ],
    sandbox: { read: [root] },
    resource: FS_RESOURCE,
  };
}

/**
 * The http service, sandboxed, allowed to reach `localhost:port` only. The test hooks (fake
 * resolver, loopback allowed) are what let an allowed fetch complete without leaving loopback.
 */
export function httpService(port: number): Record<string, unknown> {
  return {
    transport: 'stdio',
    command: 'node',
    args: [
      '--experimental-permission',
      ...baseReads(),
      path.join(DIST, 'services', 'http', 'main.js'),
      '--allow-host',
      'localhost',
      '--allow-http',
      '--allow-port',
      String(port),
      '--test-resolve',
      'localhost=127.0.0.1',
      '--test-allow-loopback',
    ],
    env: { MICRO_MCP_HTTP_TEST_HOOKS: '1' },
    sandbox: { network: true },
    resource: HTTP_RESOURCE,
  };
}

/** A loopback origin answering every GET with a fixed text body. */
export async function startOrigin(body = 'hello from the origin'): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** A fresh temp copy of the repo's policies/ (rego/ and cedar/), for edits. */
export function copyPolicies(): { dir: string; rego: string; cedar: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-policies-'));
  cpSync(path.join(ROOT, 'policies'), dir, { recursive: true });
  return { dir, rego: path.join(dir, 'rego'), cedar: path.join(dir, 'cedar') };
}

/**
 * TEST ONLY: lets `purpose` reach `hosts` with http.fetchText in a copy of the policies, in both
 * engines. Who may act under it is the token's business (its purposes claim or bound purpose).
 */
export function addPurposeHosts(p: { rego: string; cedar: string }, purpose: string, hosts: readonly string[]): void {
  const list = hosts.map((h) => JSON.stringify(h)).join(', ');
  writeFileSync(
    path.join(p.rego, `zz_purpose_${purpose.replace(/[^a-z0-9]/gi, '_')}.rego`),
    `package micro_mcp.authz\n\n_purpose_hosts[${JSON.stringify(purpose)}] := {${list}}\n`,
  );
  edit(
    path.join(p.cedar, 'policies.cedar'),
    '(context.purpose == "incident-4711" &&',
    `(context.purpose == ${JSON.stringify(purpose)} &&\n      [${list}].contains(context.resource.host)) ||\n     (context.purpose == "incident-4711" &&`,
  );
}

/** Replaces `from` with `to` in a file; throws when `from` is absent, so an edit can never silently miss. */
export function edit(file: string, from: string, to: string): void {
  const text = readFileSync(file, 'utf8');
  if (!text.includes(from)) throw new Error(`edit: ${path.basename(file)} does not contain ${JSON.stringify(from)}`);
  writeFileSync(file, text.replace(from, to));
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli/main.js ...args` with exactly `env` (plus PATH unless overridden). */
export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: timeoutMs, encoding: 'utf8' },
      (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
      },
    );
  });
}

export interface Reason {
  engine: string;
  id: string;
  message: string;
}

export interface Denial {
  code: number;
  message: string;
  data: { code: string; decision_id: string; reasons: Reason[]; policy_revision: string };
}

export type CallOutcome = { allowed: true; result: { content?: unknown; structuredContent?: unknown; isError?: boolean } } | ({ allowed: false } & Denial);

/**
 * Calls a tool and classifies the answer: a result (the policy allowed it; the tool may still
 * report its own error) or a policy denial (JSON-RPC -32003). Any other error is rethrown.
 */
export async function call(client: Client, name: string, args: Record<string, unknown>, purpose?: string): Promise<CallOutcome> {
  try {
    const result = await client.callTool({ name, arguments: args, ...(purpose !== undefined ? { _meta: { 'micro-mcp/purpose': purpose } } : {}) });
    return { allowed: true, result: result as never };
  } catch (e) {
    const err = e as { code?: unknown; message?: string; data?: unknown };
    if (err.code === -32003) return { allowed: false, code: err.code, message: err.message ?? '', data: err.data as Denial['data'] };
    throw e;
  }
}

/** Asserts nothing; returns the denial or throws with what came back instead. */
export function denied(o: CallOutcome): Denial {
  if (o.allowed) throw new Error(`expected a policy denial, got a result: ${JSON.stringify(o.result).slice(0, 300)}`);
  return o;
}

/** Returns the result or throws with the denial's reasons. */
export function allowed(o: CallOutcome): Extract<CallOutcome, { allowed: true }>['result'] {
  if (!o.allowed) throw new Error(`expected an allowed call, got a denial: ${JSON.stringify(o.data.reasons)}`);
  return o.result;
}

/** "engine:id" of every reason, sorted and unique: what the assertions compare. */
export const reasonKeys = (d: Denial | Reason[]): string[] => [...new Set((Array.isArray(d) ? d : d.data.reasons).map((r) => `${r.engine}:${r.id}`))].sort();

/** The tool names a client sees (all pages). */
export async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name).sort();
}

/** The first text block of a tool result. */
export const firstText = (r: { content?: unknown }): string => (r.content as Array<{ text?: string }> | undefined)?.[0]?.text ?? '';
