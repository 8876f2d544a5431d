/**
 * fs service end to end: real files, real symlinks/FIFOs/hard links, the real service process under
 * Node's permission model, a real SDK v2 client. Runs the whole path-escape corpus.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, symlinkSync, renameSync, unlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PROC_FD_READ,
  REPO,
  buildFsFixture,
  codeReadFlags,
  loadPathEscape,
  resultText,
  startService,
  testMinter,
  toolErrorOf,
} from '../../test/corpora/harness.js';
import type { RunningService } from '../../test/corpora/harness.js';
import { VirtualTree } from './paths.js';
import { fsTools } from './tools.js';
import { parseFsConfig } from './config.js';
import { CREDENTIAL_ENV, CREDENTIAL_META_KEY, DEFAULT_SERVICE_ISSUER, serviceAudience } from '../../schemas/contracts/service-credential.js';

const MAIN = join(REPO, 'dist', 'services', 'fs', 'main.js');
const corpus = loadPathEscape();
const fx = buildFsFixture(corpus.fixture);
let svc: RunningService;

before(async () => {
  // Extra positive-test content inside the roots.
  writeFileSync(join(fx.base, 'pub', 'binary.bin'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x01, 0xff]));
  writeFileSync(join(fx.base, 'pub', 'big.txt'), 'abcdefghij'.repeat(100)); // 1000 bytes
  writeFileSync(join(fx.base, 'pub', 'utf8.txt'), 'héllo wörld ✓\n');
  svc = await startService('fs', [...fx.rootFlags, '--max-read-bytes', '256'], { sandboxRead: fx.rootDirs });
});

after(async () => {
  await svc?.close();
  fx.cleanup();
});

/** A call with a fresh gateway credential for this tool (the service refuses any other). */
async function call(name: string, args: Record<string, unknown>) {
  return svc.call(name, args);
}

test('path-escape corpus: at least 50 cases, every one refused, nothing outside leaks', async () => {
  assert.ok(corpus.cases.length >= 50, `corpus has ${corpus.cases.length} cases`);
  for (const c of corpus.cases) {
    const r = await call(c.tool, c.arguments);
    const dump = JSON.stringify(r);
    assert.equal(r.isError, true, `${c.id} (${c.why}) was not refused: ${dump.slice(0, 300)}`);
    assert.ok(!dump.includes('TOP-SECRET'), `${c.id} leaked outside content`);
    assert.ok(!dump.includes('root:x:0'), `${c.id} leaked /etc/passwd`);
    assert.ok(!dump.includes(fx.base), `${c.id} leaked a host path`);
    assert.ok(resultText(r).length > 0, `${c.id} has no clear message`);
  }
});

test('tools are listed read-only with strict input schemas', async () => {
  const { tools } = await svc.client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['list', 'read', 'search', 'stat']);
  for (const t of tools) {
    assert.equal(t.annotations?.readOnlyHint, true);
    assert.equal(t.annotations?.openWorldHint, false);
    assert.equal(t.inputSchema.additionalProperties, false);
    assert.ok(t.outputSchema, `${t.name} has an output schema`);
  }
  assert.match(svc.client.getInstructions() ?? '', /status: ok/);
});

test('read, list, stat and search work inside the roots', async () => {
  const root = await call('list', { path: '/' });
  assert.deepEqual(
    (root.structuredContent as { entries: { name: string }[] }).entries.map((e) => e.name),
    ['pub', 'eng'],
  );
  const list = await call('list', { path: 'pub' });
  const entries = (list.structuredContent as { entries: { name: string; type: string }[] }).entries;
  assert.equal(entries.find((e) => e.name === 'link-to-secret')?.type, 'symlink');
  assert.equal(entries.find((e) => e.name === 'docs')?.type, 'directory');
  const read = await call('read', { path: '/pub/readme.txt' });
  assert.equal(read.isError, undefined);
  assert.equal(resultText(read), 'public readme\n');
  assert.equal(resultText(await call('read', { path: 'pub/docs/a.md' })), '# A\nhello\n', 'leading "/" is optional');
  const st = await call('stat', { path: '/eng/notes.txt' });
  assert.deepEqual({ ...(st.structuredContent as object), modified: 'x' }, { path: '/eng/notes.txt', type: 'file', size: 18, modified: 'x' });
  const s = await call('search', { path: '/', query: 'HELLO' });
  const results = (s.structuredContent as { results: { path: string; match: string }[] }).results;
  assert.ok(results.some((m) => m.path === '/pub/docs/a.md' && m.match === 'content'));
  assert.ok(!JSON.stringify(s).includes('TOP-SECRET'), 'search never follows symlinks');
  const n = await call('search', { path: '/pub', query: 'README' });
  assert.ok((n.structuredContent as { results: { path: string; match: string }[] }).results.some((m) => m.path === '/pub/readme.txt' && m.match === 'name'));
});

test('reads are capped and paged; binary is reported, not dumped', async () => {
  const first = await call('read', { path: '/pub/big.txt' });
  const sc = first.structuredContent as { bytes_read: number; eof: boolean; size: number };
  assert.equal(sc.bytes_read, 256);
  assert.equal(sc.eof, false);
  assert.equal(sc.size, 1000);
  const last = await call('read', { path: '/pub/big.txt', offset: 990, length: 100 });
  assert.equal(resultText(last), 'abcdefghij');
  assert.equal((last.structuredContent as { eof: boolean }).eof, true);
  const tooLong = await call('read', { path: '/pub/big.txt', length: 257 });
  assert.equal(tooLong.isError, true);
  const bin = await call('read', { path: '/pub/binary.bin' });
  assert.equal(bin.isError, undefined);
  assert.equal((bin.structuredContent as { binary: boolean }).binary, true);
  assert.match(resultText(bin), /binary content \(7 bytes\)/);
  assert.equal(resultText(await call('read', { path: '/pub/utf8.txt' })), 'héllo wörld ✓\n');
  // A window cutting a multi-byte character is still text (the partial character is dropped).
  const cut = await call('read', { path: '/pub/utf8.txt', offset: 2, length: 4 });
  assert.equal((cut.structuredContent as { binary: boolean }).binary, false);
});

test('the modern (2026) protocol era is served on stdio too', async () => {
  const modern = await startService('fs', [...fx.rootFlags], { sandboxRead: fx.rootDirs, era: 'modern' });
  try {
    assert.equal(modern.client.getProtocolEra(), 'modern');
    const r = await modern.call('read', { path: '/pub/rel-link' });
    assert.equal(r.isError, true);
    assert.equal(resultText(await modern.call('read', { path: '/pub/readme.txt' })), 'public readme\n');
    const bare = await modern.client.callTool({ name: 'read', arguments: { path: '/pub/readme.txt' } });
    assert.equal(bare.isError, true, 'a modern-era call without a credential is refused too');
    assert.match(resultText(bare), /carries no gateway credential/);
  } finally {
    await modern.close();
  }
});

test('logs carry no arguments or paths', () => {
  const log = svc.stderr();
  assert.match(log, /"tool":"read"/);
  assert.ok(!log.includes('secret') && !log.includes('readme') && !log.includes(fx.base), 'log mentions a path');
});

function runMain(nodeFlags: string[], args: string[]) {
  return spawnSync(process.execPath, [...nodeFlags, '--no-warnings', MAIN, ...args], { encoding: 'utf8', timeout: 15000 });
}

test('flags: bad flags exit 2 with a clear message; --help and --check exit 0', () => {
  const sandbox = ['--experimental-permission', ...codeReadFlags(), ...fx.rootDirs.map((d) => `--allow-fs-read=${d}`), PROC_FD_READ];
  const cases: [string[], RegExp][] = [
    [['--bogus'], /unknown flag --bogus/],
    [[], /at least one --root/],
    [['--root', '/definitely/not/here'], /directory not found/],
    [['--root', fx.rootDirs[0]!, '--root', fx.rootDirs[1]!], /only one unnamed/],
    [['--root', `a=${fx.rootDirs[0]}`, '--root', fx.rootDirs[1]!], /do not mix/],
    [[...fx.rootFlags, '--max-read-bytes', 'lots'], /must be a whole number/],
    [[...fx.rootFlags, '--max-read-bytes', '0'], /between/],
  ];
  for (const [args, msg] of cases) {
    const r = runMain(sandbox, [...args, '--insecure-no-credentials']);
    assert.equal(r.status, 2, `${args.join(' ')} -> ${r.status} ${r.stderr}`);
    assert.match(r.stderr, msg);
  }
  const help = runMain(sandbox, ['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--root DIR \| NAME=DIR/);
  assert.match(help.stdout, /--insecure-no-credentials +DEVELOPMENT ONLY/);
  const check = runMain(sandbox, [...fx.rootFlags, '--check', '--insecure-no-credentials']);
  assert.equal(check.status, 0, check.stderr);
  assert.deepEqual(JSON.parse(check.stdout), { status: 'ok', service: 'micro-mcp-fs', roots: ['pub', 'eng'], sandboxed: true, credentials: 'insecure' });
});

test('credential config: required by default (exit 2), from env or flags; the opt-out is explicit', async () => {
  const m = await testMinter();
  const env = m.env('fs');
  const jwks = env[CREDENTIAL_ENV.jwksFile]!;
  const sandbox = ['--experimental-permission', ...codeReadFlags(), ...fx.rootDirs.map((d) => `--allow-fs-read=${d}`), PROC_FD_READ];
  const run = (flags: string[], args: string[], e: Record<string, string> = {}) =>
    spawnSync(process.execPath, [...flags, '--no-warnings', MAIN, ...args], { encoding: 'utf8', timeout: 15000, env: { PATH: process.env.PATH ?? '', ...e } });
  const none = run(sandbox, [...fx.rootFlags, '--check']);
  assert.equal(none.status, 2, none.stderr);
  assert.match(none.stderr, /refusing to start: every call must carry a gateway credential/);
  assert.ok(none.stderr.includes(CREDENTIAL_ENV.audience), 'names the env it reads');
  const partial = run(sandbox, [...fx.rootFlags, '--check'], { [CREDENTIAL_ENV.audience]: env[CREDENTIAL_ENV.audience]! });
  assert.equal(partial.status, 2);
  assert.match(partial.stderr, /missing --credential-issuer/);
  // The JWKS folder outside --allow-fs-read: refused at start, not at the first call.
  const unreadable = run(sandbox, [...fx.rootFlags, '--check'], env);
  assert.equal(unreadable.status, 2);
  assert.match(unreadable.stderr, /JWKS file is missing or not readable/);
  const fromEnv = run([...sandbox, `--allow-fs-read=${m.dir}`], [...fx.rootFlags, '--check'], env);
  assert.equal(fromEnv.status, 0, fromEnv.stderr);
  assert.equal(JSON.parse(fromEnv.stdout).credentials, 'verify');
  const fromFlags = run(
    [...sandbox, `--allow-fs-read=${m.dir}`],
    [...fx.rootFlags, '--check', '--credential-audience', serviceAudience('fs'), '--credential-issuer', DEFAULT_SERVICE_ISSUER, '--credential-jwks-file', jwks],
  );
  assert.equal(fromFlags.status, 0, fromFlags.stderr);
  const badUrl = run(sandbox, [
    ...fx.rootFlags,
    '--check',
    '--credential-audience',
    'a',
    '--credential-issuer',
    'i',
    '--credential-jwks-url',
    'http://gateway.example/jwks.json',
  ]);
  assert.equal(badUrl.status, 2);
  assert.match(badUrl.stderr, /must use https/);
  const both = run(sandbox, [...fx.rootFlags, '--check', '--insecure-no-credentials', '--credential-audience', 'a']);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /contradicts/);
});

test('sandbox check: refuses without the permission model, with write or child permission, without root access or without /proc/self/fd', () => {
  const code = codeReadFlags();
  const roots = fx.rootDirs.map((d) => `--allow-fs-read=${d}`);
  const bare = runMain([], [...fx.rootFlags, '--insecure-no-credentials']);
  assert.equal(bare.status, 2);
  assert.match(bare.stderr, /permission model is off/);
  const write = runMain(['--experimental-permission', ...code, ...roots, `--allow-fs-write=${fx.base}`], [...fx.rootFlags, '--insecure-no-credentials']);
  assert.equal(write.status, 2);
  assert.match(write.stderr, /write permission/);
  const child = runMain(['--experimental-permission', ...code, ...roots, '--allow-child-process'], [...fx.rootFlags, '--insecure-no-credentials']);
  assert.equal(child.status, 2);
  assert.match(child.stderr, /child-process/);
  const noRoot = runMain(['--experimental-permission', ...code], [...fx.rootFlags, '--check', '--insecure-no-credentials']);
  assert.notEqual(noRoot.status, 0);
  const noProcFd = runMain(['--experimental-permission', ...code, ...roots], [...fx.rootFlags, '--check', '--insecure-no-credentials']);
  assert.equal(noProcFd.status, 2);
  assert.match(noProcFd.stderr, /directories are read through their open handles: add --allow-fs-read=\/proc\/self\/fd/);
  const dev = runMain([], [...fx.rootFlags, '--no-sandbox-check', '--check', '--insecure-no-credentials']);
  assert.equal(dev.status, 0, dev.stderr);
  assert.equal(JSON.parse(dev.stdout).sandboxed, false);
});

test('under the same permission flags, a direct fs call cannot reach outside the roots', () => {
  const flags = ['--experimental-permission', ...codeReadFlags(), ...fx.rootDirs.map((d) => `--allow-fs-read=${d}`)];
  const script = `
    const fs = require('node:fs');
    const out = {};
    const attempt = (k, f) => { try { f(); out[k] = 'allowed'; } catch (e) { out[k] = e.code || String(e); } };
    attempt('inside', () => fs.readFileSync(${JSON.stringify(join(fx.base, 'pub', 'readme.txt'))}));
    attempt('outside', () => fs.readFileSync(${JSON.stringify(join(fx.base, 'outside', 'secret.txt'))}));
    attempt('etc_passwd', () => fs.readFileSync('/etc/passwd'));
    attempt('write_inside', () => fs.writeFileSync(${JSON.stringify(join(fx.base, 'pub', 'new.txt'))}, 'x'));
    attempt('child', () => require('node:child_process').execFileSync('/bin/true'));
    attempt('worker', () => new (require('node:worker_threads').Worker)('1', { eval: true }));
    process.stdout.write(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, [...flags, '--no-warnings', '-e', script], { encoding: 'utf8', timeout: 15000 });
  const out = JSON.parse(r.stdout) as Record<string, string>;
  assert.equal(out.inside, 'allowed');
  // Note: Node 20's permission model checks the path as given and follows symlinks inside the
  // allowed tree to their targets (documented limitation); that case is covered by the service's own
  // no-follow checks (the corpus's sym-* cases), not by the sandbox.
  for (const k of ['outside', 'etc_passwd', 'write_inside', 'child', 'worker']) assert.equal(out[k], 'ERR_ACCESS_DENIED', `${k}: ${out[k]}`);
});

test('a symlink swapped in between check and open is never followed (race, in process)', async () => {
  const base = mkdtempSync(join(tmpdir(), 'micro-mcp-race-'));
  try {
    mkdirSync(join(base, 'root'));
    writeFileSync(join(base, 'secret.txt'), 'TOP-SECRET-RACE');
    const target = join(base, 'root', 'flip.txt');
    writeFileSync(join(base, 'plain.txt'), 'plain');
    // In process, straight to the handler: the credential guard is not what this test is about.
    const cfg = parseFsConfig(['--root', join(base, 'root'), '--insecure-no-credentials']);
    const read = fsTools(new VirtualTree(cfg.roots), cfg).find((t) => t.name === 'read')!;
    let stop = false;
    // Swapper: atomically replaces flip.txt with a regular file, then with a symlink to the secret.
    const swapper = (async () => {
      let i = 0;
      while (!stop) {
        const tmp = join(base, 'root', `.t${i++}`);
        if (i % 2) writeFileSync(tmp, 'plain');
        else symlinkSync(join(base, 'secret.txt'), tmp);
        renameSync(tmp, target);
        await new Promise((r) => setImmediate(r));
      }
    })();
    let ok = 0;
    let refused = 0;
    for (let i = 0; i < 400; i++) {
      try {
        const out = await (read.handler as (a: unknown, c: unknown) => Promise<{ text: string }>)({ path: '/flip.txt' }, {});
        assert.ok(!out.text.includes('TOP-SECRET'), 'followed a swapped-in symlink');
        ok++;
      } catch {
        refused++;
      }
    }
    stop = true;
    await swapper;
    assert.equal(ok + refused, 400);
    assert.ok(refused > 0, 'the swapper never produced a refusal; the test did not exercise the race');
    try {
      unlinkSync(target);
    } catch {
      /* gone */
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('Streamable HTTP mode on 127.0.0.1 with /healthz; the credential comes as Authorization: Bearer', async () => {
  const { spawn } = await import('node:child_process');
  const m = await testMinter();
  const jwks = m.env('fs')[CREDENTIAL_ENV.jwksFile]!;
  const child = spawn(
    process.execPath,
    [
      '--experimental-permission',
      ...codeReadFlags(),
      ...fx.rootDirs.map((d) => `--allow-fs-read=${d}`),
      `--allow-fs-read=${m.dir}`,
      PROC_FD_READ,
      '--no-warnings',
      MAIN,
      ...fx.rootFlags,
      '--http-port',
      '0',
      '--credential-audience',
      serviceAudience('fs'),
      '--credential-issuer',
      m.minter.issuer,
      '--credential-jwks-file',
      jwks,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '' } },
  );
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      child.stderr.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /127\.0\.0\.1:(\d+)/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', () => reject(new Error(`exited: ${buf}`)));
    });
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, 'ok');
    const { Client } = await import('@modelcontextprotocol/client');
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/client');
    const connectWith = async (headers: Record<string, string>) => {
      const c = new Client({ name: 't', version: '0' });
      await c.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), { requestInit: { headers } }));
      return c;
    };
    // One credential for tool "read", sent on every request of this connection.
    const client = await connectWith({ authorization: `Bearer ${await m.mint('fs', 'read')}` });
    assert.equal(resultText(await client.callTool({ name: 'read', arguments: { path: '/pub/readme.txt' } })), 'public readme\n');
    assert.equal((await client.callTool({ name: 'read', arguments: { path: '/pub/../outside/secret.txt' } })).isError, true);
    const otherTool = await client.callTool({ name: 'stat', arguments: { path: '/pub/readme.txt' } });
    assert.equal(otherTool.isError, true, 'a credential for read does not cover stat');
    assert.match(resultText(otherTool), /does not cover this tool/);
    await client.close();
    const anonymous = await connectWith({});
    const bare = await anonymous.callTool({ name: 'read', arguments: { path: '/pub/readme.txt' } });
    assert.equal(bare.isError, true);
    assert.match(resultText(bare), /carries no gateway credential/);
    assert.ok(!JSON.stringify(bare).includes('public readme'));
    await anonymous.close();
    const wrongAud = await connectWith({ authorization: `Bearer ${await m.mint('http', 'read')}` });
    assert.match(resultText(await wrongAud.callTool({ name: 'read', arguments: { path: '/pub/readme.txt' } })), /for another service/);
    await wrongAud.close();
    const { request } = await import('node:http');
    const badHost = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/healthz', headers: { host: 'evil.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    assert.equal(badHost, 403, 'DNS-rebinding protection: a foreign Host header is refused');
  } finally {
    child.kill();
  }
});

test('the credential narrows the reach: a path outside its roots is refused by the service, whatever the configured roots', async () => {
  const { minter } = await testMinter();
  const withReach = async (tool: string, args: Record<string, unknown>, roots: string[]) => {
    const credential = await minter.mint({ service: 'fs', tool, principal: { id: 'harness' }, purpose: null, decisionId: 'd-reach', reach: { roots } });
    return svc.client.callTool({ name: tool, arguments: args, _meta: { [CREDENTIAL_META_KEY]: credential } });
  };
  // The control: inside the reach the same read works.
  assert.equal(resultText(await withReach('read', { path: '/pub/utf8.txt' }, ['/pub'])), 'héllo wörld ✓\n');
  for (const [tool, args] of [
    ['read', { path: '/pub/utf8.txt' }],
    ['stat', { path: 'pub/utf8.txt' }],
    ['list', { path: '/pub' }],
    ['search', { path: '/', query: 'héllo' }],
  ] as const) {
    const r = await withReach(tool, args, ['/pub/sub', '/publications']);
    assert.equal(r.isError, true, `${tool}: ${JSON.stringify(r)}`);
    assert.equal(toolErrorOf(r)?.code, 'path_not_in_reach', tool);
    assert.doesNotMatch(resultText(r), /utf8|pub/);
  }
});
