/**
 * Real redis-server and nginx (Debian packages, installed by `make test`) on loopback ports of their
 * own, for the tests of several gateway replicas. nginx runs the shipped config
 * (src/config/examples/nginx.conf) with only its ports and temp paths changed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { ROOT } from './harness.js';

/** A loopback port free right now (reserved, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

/** Resolves once something accepts connections on the port (or rejects when `proc` exits first). */
async function listening(port: number, proc: ChildProcess, what: string, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}:\n${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function binary(name: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin']) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  throw new Error(`${name} is not installed (make test installs it: make replica-tools)`);
}

export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** A throwaway redis-server on its own port: no persistence, loopback only. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let out = '';
  const start = async () => {
    out = '';
    proc = spawn(binary('redis-server'), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
    await listening(port, proc, 'redis-server', () => out);
  };
  const stop = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
  };
  await start();
  return { url: `redis://127.0.0.1:${port}/0`, port, stop, start };
}

export interface Nginx {
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** nginx with the shipped config, in front of replicas r1 and r2 on their ports. */
export async function startNginx(dir: string, r1Port: number, r2Port: number, port?: number): Promise<Nginx> {
  const listen = port ?? (await freePort());
  mkdirSync(dir, { recursive: true });
  const conf = readFileSync(path.join(ROOT, 'src', 'config', 'examples', 'nginx.conf'), 'utf8')
    .replaceAll('127.0.0.1:8081', `127.0.0.1:${r1Port}`)
    .replaceAll('127.0.0.1:8082', `127.0.0.1:${r2Port}`)
    .replace('listen 127.0.0.1:8080;', `listen 127.0.0.1:${listen};`)
    .replaceAll('/tmp/micro-mcp-nginx', path.join(dir, 'nginx'));
  const file = path.join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  let out = '';
  const proc = spawn(binary('nginx'), ['-c', file, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  await listening(listen, proc, 'nginx', () => out);
  return {
    port: listen,
    url: `http://127.0.0.1:${listen}`,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGQUIT');
      await exited;
    },
  };
}
