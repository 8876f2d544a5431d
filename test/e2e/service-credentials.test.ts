/**
 * Services trust only the gateway. Straight to the REAL fs service process, launched sandboxed as in
 * src/config/examples/dev.yaml (Node permission model; the JWKS file in a run dir it may read): a
 * call with no credential, one minted for another service, an expired one, one signed by a foreign
 * key and one whose scope names another tool are each refused; a valid one works. Then through the
 * REAL gateway: the gateway's minting and the service's check agree, and the agent's own token never
 * reaches the service (not in its environment or command line, and not accepted by it if it did).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { CREDENTIAL_META_KEY } from '../../schemas/contracts/service-credential.js';
import { createServiceCredentialMinter } from '../../src/auth/service-credentials.js';
import { PROC_FD_READ, toolErrorOf } from '../corpora/harness.js';
import type { Minter } from '../../src/auth/service-credentials.js';
import { codeReadFlags, fsServiceEntry, stopGateway } from '../helpers/attacks.js';
import { ROOT, connect, eventually, startGateway } from '../helpers/harness.js';
import type { Gateway } from '../helpers/harness.js';

const text = (r: { content?: unknown }): string => (r.content as Array<{ text?: string }> | undefined)?.[0]?.text ?? '';
const FS_MAIN = path.join(ROOT, 'dist', 'services', 'fs', 'main.js');

let base: string;
let publicDir: string;
let engDir: string;

before(() => {
  base = mkdtempSync(path.join(tmpdir(), 'micro-mcp-svc-cred-'));
  publicDir = path.join(base, 'public');
  engDir = path.join(base, 'eng');
  mkdirSync(publicDir);
  mkdirSync(engDir);
  writeFileSync(path.join(publicDir, 'hello.txt'), 'hello from the fs service\n');
  writeFileSync(path.join(engDir, 'notes.txt'), 'engineering notes\n');
});
after(() => rmSync(base, { recursive: true, force: true }));

describe('straight to the sandboxed fs service', () => {
  let runDir: string;
  let skewMs = 0;
  let minter: Minter;
  let foreign: Minter;
  let client: Client;
  let stderr = '';

  const mint = (m: Minter, service: string, tool: string): Promise<string> =>
    m.mint({ service, tool, principal: { id: 'alice' }, purpose: null, decisionId: `d-${randomUUID()}` });
  const read = (meta?: Record<string, unknown>) =>
    client.callTool({ name: 'read', arguments: { path: '/public/hello.txt' }, ...(meta ? { _meta: meta } : {}) });
  const withCredential = (token: string) => ({ [CREDENTIAL_META_KEY]: token });

  before(async () => {
    // The gateway's run dir stands in here: the minter writes its JWKS file there, as serve.ts does.
    runDir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-run-test-'));
    minter = await createServiceCredentialMinter({ jwks_file: path.join(runDir, 'service-jwks.json'), autoRotate: false, now: () => Date.now() + skewMs });
    foreign = await createServiceCredentialMinter({ autoRotate: false }); // same shape, other keys, never published
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        '--experimental-permission',
        ...codeReadFlags(),
        `--allow-fs-read=${publicDir}`,
        `--allow-fs-read=${engDir}`,
        `--allow-fs-read=${runDir}`,
        PROC_FD_READ,
        FS_MAIN,
        '--root',
        `public=${publicDir}`,
        '--root',
        `eng=${engDir}`,
      ],
      env: { PATH: process.env.PATH ?? '', ...minter.serviceEnv('fs') },
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    client = new Client({ name: 'svc-cred-test', version: '0.0.0' });
    await client.connect(transport);
  });
  after(async () => {
    await client?.close();
    minter?.close();
    foreign?.close();
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  });

  test('the service runs sandboxed with its check on', () => {
    assert.match(stderr, /"msg":"credential check on"/);
    assert.doesNotMatch(stderr, /sandbox check skipped|CREDENTIAL CHECK DISABLED/);
  });

  test('a valid credential for this service and this tool works', async () => {
    const r = await read(withCredential(await mint(minter, 'fs', 'read')));
    assert.equal(r.isError, undefined, text(r));
    assert.equal(text(r), 'hello from the fs service\n');
  });

  const refusals: Array<[string, () => Promise<Record<string, unknown> | undefined>, RegExp, string]> = [
    ['no credential at all', async () => undefined, /carries no gateway credential/, 'ERR_CREDENTIAL_MISSING'],
    ['an empty credential', async () => withCredential(''), /carries no gateway credential/, 'ERR_CREDENTIAL_MISSING'],
    [
      'a credential minted for another service (aud http)',
      async () => withCredential(await mint(minter, 'http', 'read')),
      /for another service/,
      'ERR_CREDENTIAL_AUDIENCE',
    ],
    [
      'an expired credential',
      async () => {
        skewMs = -120_000; // minted two minutes ago by the real minter: exp long past
        try {
          return withCredential(await mint(minter, 'fs', 'read'));
        } finally {
          skewMs = 0;
        }
      },
      /has expired/,
      'ERR_CREDENTIAL_EXPIRED',
    ],
    ['a credential signed by a foreign key', async () => withCredential(await mint(foreign, 'fs', 'read')), /is not valid/, 'ERR_CREDENTIAL_INVALID'],
    [
      'a credential whose scope names another tool',
      async () => withCredential(await mint(minter, 'fs', 'stat')),
      /does not cover this tool/,
      'ERR_CREDENTIAL_SCOPE',
    ],
    ['a credential that is not a string', async () => ({ [CREDENTIAL_META_KEY]: { token: 'x' } }), /carries no gateway credential/, 'ERR_CREDENTIAL_MISSING'],
  ];
  for (const [name, meta, message, code] of refusals) {
    test(`refused: ${name}`, async () => {
      const m = await meta();
      const r = await read(m);
      assert.equal(r.isError, true, `${name} was accepted: ${JSON.stringify(r).slice(0, 200)}`);
      assert.match(text(r), message);
      assert.ok(text(r).includes(code), `the refusal names ${code}: ${text(r)}`);
      assert.equal(toolErrorOf(r)?.code, 'refused_credential');
      assert.ok(!JSON.stringify(r).includes('hello from the fs service'), 'no content leaks');
      const token = m?.[CREDENTIAL_META_KEY];
      if (typeof token === 'string' && token.length > 0) assert.ok(!JSON.stringify(r).includes(token), 'the refusal never echoes the token');
    });
  }

  test('the refusals are logged by code only, never with the token', () => {
    assert.match(stderr, /"code":"refused_credential"/);
    assert.doesNotMatch(stderr, /eyJ/, 'no JWT in the service log');
  });
});

describe('through the real gateway', () => {
  let gw: Gateway;

  before(async () => {
    gw = await startGateway({
      policy: { decision_timeout_ms: 5000 },
      services: { fs: fsServiceEntry(['--root', `public=${publicDir}`, '--root', `eng=${engDir}`], [publicDir, engDir]) },
    });
  });
  after(async () => {
    if (gw) await stopGateway(gw);
  });

  test("a normal call works: the gateway's minting and the service's check agree", async () => {
    const client = await connect(gw, 'modern');
    try {
      const r = await client.callTool({ name: 'fs.read', arguments: { path: '/public/hello.txt' } });
      assert.equal(r.isError, undefined, JSON.stringify(r));
      assert.equal(text(r), 'hello from the fs service\n');
      const s = await client.callTool({ name: 'fs.stat', arguments: { path: '/eng/notes.txt' } });
      assert.equal(s.isError, undefined, 'a second tool gets its own credential');
    } finally {
      await client.close();
    }
    const legacy = await connect(gw, 'legacy');
    try {
      assert.equal(text(await legacy.callTool({ name: 'fs.read', arguments: { path: '/eng/notes.txt' } })), 'engineering notes\n');
    } finally {
      await legacy.close();
    }
  });

  test("the service never sees the agent's token", async () => {
    const agentToken = await gw.token({ sub: 'alice-secret-check' });
    const client = await connect(gw, 'modern', { token: agentToken });
    try {
      // An agent that puts its own token where the service credential goes: the gateway replaces it
      // with one it minted (were the agent's token forwarded, the service would refuse it: see below).
      const r = await client.callTool({ name: 'fs.read', arguments: { path: '/public/hello.txt' }, _meta: { [CREDENTIAL_META_KEY]: agentToken } });
      assert.equal(r.isError, undefined, JSON.stringify(r));
      assert.equal(text(r), 'hello from the fs service\n');
    } finally {
      await client.close();
    }
    // The service process: its environment and command line hold the credential config, never a token.
    const gwPid = gw.proc.pid!;
    const children = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === gwPid;
        } catch {
          return false;
        }
      });
    const service = children.find((d) => readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(FS_MAIN));
    assert.ok(service, 'the fs service runs as a child of the gateway');
    const env = readFileSync(`/proc/${service}/environ`, 'utf8').split('\0').filter(Boolean);
    const cmdline = readFileSync(`/proc/${service}/cmdline`, 'utf8');
    assert.deepEqual(env.map((e) => e.split('=')[0]).sort(), [
      'MICRO_MCP_CREDENTIAL_AUDIENCE',
      'MICRO_MCP_CREDENTIAL_ISSUER',
      'MICRO_MCP_CREDENTIAL_JWKS_FILE',
    ]);
    assert.ok(env.includes('MICRO_MCP_CREDENTIAL_AUDIENCE=micro-mcp:service:fs'));
    for (const where of [env.join('\n'), cmdline]) {
      assert.ok(!where.includes(agentToken) && !where.includes(agentToken.split('.')[1]!), 'no agent token in the service process');
    }
    // And were the agent's token handed to the service, the service would refuse it.
    const jwks = env.find((e) => e.startsWith('MICRO_MCP_CREDENTIAL_JWKS_FILE='))!.split('=')[1]!;
    const direct = new Client({ name: 'direct', version: '0' });
    await direct.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [
          '--experimental-permission',
          ...codeReadFlags(),
          `--allow-fs-read=${publicDir}`,
          `--allow-fs-read=${path.dirname(jwks)}`,
          PROC_FD_READ,
          FS_MAIN,
          '--root',
          `public=${publicDir}`,
        ],
        env: Object.fromEntries([['PATH', process.env.PATH ?? ''], ...env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])]),
        stderr: 'ignore',
      }),
    );
    try {
      const r = await direct.callTool({ name: 'read', arguments: { path: '/public/hello.txt' }, _meta: { [CREDENTIAL_META_KEY]: agentToken } });
      assert.equal(r.isError, true, 'an agent token is not a service credential');
      assert.match(text(r), /refused/);
    } finally {
      await direct.close();
    }
  });
});

describe('through the real gateway to a remote (Streamable HTTP) fs service', () => {
  let gw: Gateway;
  let service: ReturnType<typeof spawn> | undefined;
  let port = 0;

  before(async () => {
    // A free loopback port for the service, reserved then released (the gateway must know its URL
    // before the service can know the gateway's JWKS URL; the gateway retries until it is up).
    port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    gw = await startGateway({
      policy: { decision_timeout_ms: 5000 },
      services: {
        fs: {
          transport: 'http',
          url: `http://127.0.0.1:${port}/mcp`,
          restart: { initial_delay_ms: 50, max_delay_ms: 200 },
          resource: { kind: 'path', arg: 'path' },
        },
      },
    });
    service = spawn(
      process.execPath,
      [
        '--experimental-permission',
        ...codeReadFlags(),
        `--allow-fs-read=${publicDir}`,
        PROC_FD_READ,
        FS_MAIN,
        '--root',
        `public=${publicDir}`,
        '--http-port',
        String(port),
        '--credential-audience',
        'micro-mcp:service:fs',
        '--credential-issuer',
        'micro-mcp:gateway',
        '--credential-jwks-url',
        `${gw.url}/.well-known/jwks.json`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '' } },
    );
  });
  after(async () => {
    service?.kill();
    if (gw) await stopGateway(gw);
  });

  // The gateway sends the credential both in `_meta` and as `Authorization: Bearer` (the service
  // checks `_meta` first); the header-only path is proven in services/fs/fs.test.ts (HTTP mode).
  test("a remote service verifies the gateway's credential against the gateway's JWKS URL", async () => {
    const client = await connect(gw, 'modern');
    try {
      const r = await eventually(
        async () => {
          try {
            const res = await client.callTool({ name: 'fs.read', arguments: { path: '/public/hello.txt' } });
            return res.isError ? undefined : res;
          } catch {
            return undefined; // the gateway is still connecting to the service
          }
        },
        15_000,
        100,
      );
      assert.equal(text(r as { content?: unknown }), 'hello from the fs service\n');
    } finally {
      await client.close();
    }
    // The same service, called without the gateway (a real SDK client, no Authorization): refused.
    const direct = new Client({ name: 'direct', version: '0' });
    await direct.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)));
    try {
      const r = await direct.callTool({ name: 'read', arguments: { path: '/public/hello.txt' } });
      assert.equal(r.isError, true);
      assert.match(text(r), /carries no gateway credential/);
    } finally {
      await direct.close();
    }
  });
});
