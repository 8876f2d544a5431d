/**
 * The `micro-mcp` command as users run it: refusals at start-up, the stdio face with real SDK clients of
 * both eras, the dev token command.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { decodeJwt } from 'jose';
import { stringify } from 'yaml';
import { CLI, echoService, ROOT } from '../helpers/harness.js';

const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', HOME: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

function writeConfig(name: string, cfg: Record<string, unknown>): string {
  const file = path.join(dir, name);
  writeFileSync(file, stringify(cfg));
  return file;
}

const policy = { rego: { dir: path.join(ROOT, 'policies', 'rego') }, cedar: { dir: path.join(ROOT, 'policies', 'cedar') }, watch: false };

describe('micro-mcp CLI', () => {
  test('a bad config stops start-up with the key path and the reason', async () => {
    const file = writeConfig('bad.yaml', { auth: { mode: 'dev' }, services: { echo: { transport: 'stdio', command: 'node', timeout: 5 } } });
    const r = await run(['serve', '--config', file]);
    assert.equal(r.code, 1);
    assert.match(r.out, /ERR_CONFIG_INVALID: .*bad\.yaml: \/services\/echo: unknown key "timeout"/);
    assert.doesNotMatch(r.out, /listening/);
  });

  test('dev mode refuses a non-loopback listen address before listening', async () => {
    const file = writeConfig('dev-public.yaml', { auth: { mode: 'dev', dev_key_dir: path.join(dir, 'keys') }, policy, services: { echo: echoService() } });
    const r = await run(['serve', '--config', file, '--host', '0.0.0.0', '--port', '0']);
    assert.equal(r.code, 1);
    assert.match(r.out, /auth\.mode "dev" is allowed only on a loopback address/);
    assert.doesNotMatch(r.out, /listening/);
  });

  test('a broken policy set at start-up refuses to start, naming file and line', async () => {
    const regoDir = path.join(dir, 'broken-rego');
    rmSync(regoDir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(regoDir);
    writeFileSync(path.join(regoDir, 'authz.rego'), 'package micro_mcp.authz\n\nallow if {\n  input.x ==\n}\n');
    const file = writeConfig('broken-policy.yaml', {
      server: { port: 0 },
      auth: { mode: 'dev', dev_key_dir: path.join(dir, 'keys') },
      policy: { ...policy, rego: { dir: regoDir } },
      audit: { file: path.join(dir, 'audit', 'a.jsonl') },
      services: { echo: echoService() },
    });
    const r = await run(['serve', '--config', file]);
    assert.equal(r.code, 1);
    assert.match(r.out, /ERR_POLICY_COMPILE/);
    assert.match(r.out, /authz\.rego:\d+/);
    assert.doesNotMatch(r.out, /listening/);
  });

  test('a second gateway on the same audit file refuses to start (one writer per chain)', async () => {
    const auditFile = path.join(dir, 'shared-audit', 'audit.jsonl');
    const base = { auth: { mode: 'dev', dev_key_dir: path.join(dir, 'keys') }, policy, audit: { file: auditFile }, services: { echo: echoService() } };
    const first = writeConfig('first.yaml', { ...base, server: { port: 0 } });
    const second = writeConfig('second.yaml', { ...base, server: { port: 0 } });
    const p = spawn(process.execPath, [CLI, 'serve', '--config', first], {
      env: { PATH: process.env.PATH ?? '', HOME: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error(`first gateway did not start: ${out}`)), 20_000);
        p.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('listening')) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      const r = await run(['serve', '--config', second]);
      assert.equal(r.code, 1);
      assert.match(r.out, new RegExp(`ERR_AUDIT_UNAVAILABLE: audit log unavailable: the audit file is in use by process ${p.pid}`));
    } finally {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
    // Once the first is gone, the file is free again.
    const again = spawn(process.execPath, [CLI, 'serve', '--config', second], {
      env: { PATH: process.env.PATH ?? '', HOME: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    again.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const { eventually } = await import('../helpers/harness.js');
    await eventually(() => out.includes('listening'), 20_000);
    again.kill('SIGTERM');
    await new Promise((r) => again.once('exit', r));
  });

  test('`token` mints a dev token with the requested claims', async () => {
    const keyDir = path.join(dir, 'tok-keys');
    const r = await run(['token', '--sub', 'alice', '--groups', 'eng', '--scopes', 'fs:read http:fetch', '--ttl', '15m', '--key-dir', keyDir]);
    assert.equal(r.code, 0, r.out);
    const claims = decodeJwt(r.out.trim());
    assert.equal(claims.sub, 'alice');
    assert.deepEqual(claims.groups, ['eng']);
    assert.equal(claims.scope, 'fs:read http:fetch');
    assert.ok((claims.exp ?? 0) - (claims.iat ?? 0) === 900);
  });

  test('`stdio` serves the same catalog to a local client, in both eras', async () => {
    const file = writeConfig('stdio.yaml', {
      auth: { mode: 'dev', dev_key_dir: path.join(dir, 'keys') },
      policy,
      audit: { file: path.join(dir, 'stdio-audit', 'a.jsonl') },
      stdio: { principal: { id: 'local-dev', groups: ['eng'], scopes: ['echo:call'], purpose: 'local-testing' } },
      services: { echo: echoService() },
    });
    for (const mode of ['legacy', { pin: '2026-07-28' }] as const) {
      const client = new Client({ name: 'stdio-e2e', version: '1' }, { versionNegotiation: { mode } });
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [CLI, 'stdio', '--config', file],
          env: { PATH: process.env.PATH ?? '', HOME: dir },
          stderr: 'ignore',
        }),
      );
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo.echo'));
      const r = await client.callTool({ name: 'echo.echo', arguments: { text: 'over stdio' } });
      assert.equal((r.content as Array<{ text: string }>)[0]!.text, 'over stdio');
      await client.close();
    }
  });
});
