/**
 * http service end to end: the real service process (under Node's permission model, test hooks on),
 * real loopback HTTP servers (redirect chains, slow drip, huge bodies, binary), a real SDK v2 client,
 * and the SSRF corpus. In test-hook mode the service's connect hook refuses any address outside
 * loopback, so even a broken guard cannot open a connection off this machine.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO, codeReadFlags, credentialMeta, loadSsrf, redirectorHandler, resultText, startService, startTestServer } from '../../test/corpora/harness.js';
import type { RunningService, TestServer } from '../../test/corpora/harness.js';
import { blockedReason, isLoopback } from '../common/ip.js';
import { htmlToText } from './html.js';
import { parseHostPattern, hostAllowed } from './config.js';

const MAIN = join(REPO, 'dist', 'services', 'http', 'main.js');
const HOOKS = { MICRO_MCP_HTTP_TEST_HOOKS: '1' };
const corpus = loadSsrf();
let content: TestServer;
let redirector: TestServer;
let redirectTarget = '';
let svc: RunningService; // loopback allowed: positive tests and redirect cases

before(async () => {
  content = await startTestServer((req, res) => {
    switch (req.url) {
      case '/text':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('hello from loopback ✓');
        return;
      case '/html':
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end(
            '<!doctype html><html><head><title>T</title><style>p{}</style></head><body><h1>Title</h1><script>alert(1)</script><p>One &amp; two&nbsp;&lt;three&gt; &#x263A;</p><!-- hidden --><ul><li>a</li><li>b</li></ul></body></html>',
          );
        return;
      case '/json':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        return;
      case '/huge': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const chunk = 'x'.repeat(64 * 1024);
        let sent = 0;
        const pump = () => {
          while (sent < 64 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
          if (sent < 64 * 1024 * 1024) res.once('drain', pump);
          else res.end();
        };
        res.on('close', () => (sent = Infinity));
        pump();
        return;
      }
      case '/drip': {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const t = setInterval(() => res.write('.'), 100);
        res.on('close', () => clearInterval(t));
        return;
      }
      case '/binary':
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from([1, 2, 3, 0, 255]));
        return;
      case '/nul':
        res.writeHead(200, { 'content-type': 'text/plain' }).end(Buffer.from('abc\0def'));
        return;
      case '/gzip':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' }).end(Buffer.from([0x1f, 0x8b, 8, 0]));
        return;
      case '/notype':
        res.writeHead(200).end('untyped');
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('missing');
    }
  });
  redirector = await startTestServer(redirectorHandler(() => redirectTarget));
  const resolveFlags = corpus.cases.flatMap((c) => Object.entries(c.resolve ?? {}).flatMap(([h, a]) => ['--test-resolve', `${h}=${a}`]));
  svc = await startService(
    'http',
    [
      ...corpus.allow_hosts.flatMap((h) => ['--allow-host', h]),
      '--allow-host',
      'content.test',
      '--allow-host',
      'pin.test',
      '--allow-host',
      'rebind2.test',
      '--allow-http',
      ...[...corpus.allow_ports, content.port, redirector.port].flatMap((p) => ['--allow-port', String(p)]),
      '--test-resolve',
      'content.test=127.0.0.1',
      '--test-resolve',
      'redirector.test=127.0.0.1',
      '--test-resolve',
      'pin.test=127.0.0.1,10.0.0.1',
      '--test-resolve',
      'rebind2.test=93.184.216.34,127.0.0.1',
      ...resolveFlags,
      '--test-allow-loopback',
      '--timeout-ms',
      '1500',
      '--max-bytes',
      '100000',
    ],
    { sandboxRead: [], env: HOOKS },
  );
});

after(async () => {
  await svc?.close();
  await content?.close();
  await redirector?.close();
});

// Every call carries a fresh gateway credential for fetchText (the service refuses any other).
const fetchText = (s: RunningService, args: Record<string, unknown>) => s.call('fetchText', args);

test('SSRF corpus (direct): at least 50 cases, each refused by the guard before any connection', async () => {
  const direct = corpus.cases.filter((c) => c.mode === 'direct');
  assert.ok(corpus.cases.length >= 50 && direct.length >= 50, `corpus has ${corpus.cases.length} cases, ${direct.length} direct`);
  const resolveFlags = direct.flatMap((c) => Object.entries(c.resolve ?? {}).flatMap(([h, a]) => ['--test-resolve', `${h}=${a}`]));
  const strict = await startService(
    'http',
    [
      ...corpus.allow_hosts.flatMap((h) => ['--allow-host', h]),
      '--allow-http',
      ...corpus.allow_ports.flatMap((p) => ['--allow-port', String(p)]),
      ...resolveFlags,
    ],
    { sandboxRead: [], env: HOOKS },
  );
  try {
    for (const c of direct) {
      const r = await fetchText(strict, c.arguments);
      assert.equal(r.isError, true, `${c.id} (${c.why}) was not refused: ${JSON.stringify(r).slice(0, 300)}`);
      assert.ok(resultText(r).length > 0, `${c.id} has no clear message`);
    }
    // The guard refused every case itself: the last-line connect hook never had to step in.
    assert.doesNotMatch(strict.stderr(), /test-hook: refused connect/);
    assert.ok(!strict.stderr().includes('169.254') && !strict.stderr().includes('corp.test'), 'logs carry no URLs or addresses');
  } finally {
    await strict.close();
  }
});

test('SSRF corpus (redirect): every redirect hop is checked again', async () => {
  const cases = corpus.cases.filter((c) => c.mode === 'redirect');
  const origin = `http://redirector.test:${redirector.port}`;
  for (const c of cases) {
    redirectTarget = c.redirect_to ?? '';
    const before = redirector.requests.length;
    const r = await fetchText(svc, { ...c.arguments, url: c.arguments.url.replace('{{REDIRECTOR}}', origin) });
    assert.equal(r.isError, true, `${c.id} (${c.why}) was not refused: ${JSON.stringify(r).slice(0, 300)}`);
    assert.ok(redirector.requests.length > before, `${c.id} never reached the redirector`);
  }
  assert.doesNotMatch(svc.stderr(), /test-hook: refused connect to (?!93\.184)/);
});

test('fetches text, JSON and HTML (as readable text) from an allowed host', async () => {
  const base = `http://content.test:${content.port}`;
  const t = await fetchText(svc, { url: `${base}/text` });
  assert.equal(t.isError, undefined, resultText(t));
  assert.equal((t.structuredContent as { text: string }).text, 'hello from loopback ✓');
  assert.ok(
    content.requests.some((r) => r === `GET content.test:${content.port} /text`),
    'Host header carries the name, not the IP',
  );
  const h = await fetchText(svc, { url: `${base}/html` });
  const text = (h.structuredContent as { text: string }).text;
  assert.equal(text, 'Title\n\nOne & two <three> ☺\n\n- a\n- b');
  const j = await fetchText(svc, { url: `${base}/json` });
  assert.equal((j.structuredContent as { text: string }).text, '{"ok":true}');
  const head = await fetchText(svc, { url: `${base}/text`, method: 'HEAD' });
  assert.equal((head.structuredContent as { status: number }).status, 200);
  const missing = await fetchText(svc, { url: `${base}/nope` });
  assert.equal((missing.structuredContent as { status: number }).status, 404);
});

test('a chain of 5 redirects is followed; the 6th is refused', async () => {
  const ok = await fetchText(svc, { url: `http://redirector.test:${redirector.port}/chain/5` });
  assert.equal(ok.isError, undefined, resultText(ok));
  assert.equal((ok.structuredContent as { redirects: number; text: string }).redirects, 5);
  const tooMany = await fetchText(svc, { url: `http://redirector.test:${redirector.port}/chain/6` });
  assert.equal(tooMany.isError, true);
  assert.match(resultText(tooMany), /too many redirects/);
});

test('size cap applies while streaming a huge body; slow drip hits the time cap', async () => {
  const base = `http://content.test:${content.port}`;
  const started = Date.now();
  const huge = await fetchText(svc, { url: `${base}/huge`, max_bytes: 5000 });
  const sc = huge.structuredContent as { bytes: number; truncated: boolean };
  assert.equal(sc.bytes, 5000);
  assert.equal(sc.truncated, true);
  const big = await fetchText(svc, { url: `${base}/huge` });
  assert.equal((big.structuredContent as { bytes: number }).bytes, 100000);
  assert.equal((await fetchText(svc, { url: `${base}/huge`, max_bytes: 100001 })).isError, true, 'max_bytes above the cap fails validation');
  const drip = await fetchText(svc, { url: `${base}/drip` });
  assert.equal(drip.isError, true);
  assert.match(resultText(drip), /timed out/);
  assert.ok(Date.now() - started < 10000);
});

test('non-text content is refused', async () => {
  const base = `http://content.test:${content.port}`;
  for (const [path, msg] of [
    ['/binary', /not a text content type/],
    ['/nul', /binary content/],
    ['/gzip', /compressed/],
    ['/notype', /no content type/],
  ] as const) {
    const r = await fetchText(svc, { url: `${base}${path}` });
    assert.equal(r.isError, true, path);
    assert.match(resultText(r), msg);
  }
});

test('DNS rebinding: the connection goes to the checked address, there is no second lookup', async () => {
  // pin.test answers 127.0.0.1 first, then 10.0.0.1: the fetch must use the first (checked) answer.
  const before = content.requests.length;
  const pin = await fetchText(svc, { url: `http://pin.test:${content.port}/text` });
  assert.equal(pin.isError, undefined, resultText(pin));
  assert.equal(content.requests.length, before + 1);
  // rebind2.test answers a public address first (passes the check), then 127.0.0.1. A second lookup
  // at connect time would reach the loopback server; instead the connect goes to the checked public
  // address, which the test hook refuses (nothing leaves loopback) and records.
  const r = await fetchText(svc, { url: `http://rebind2.test:${content.port}/text` });
  assert.equal(r.isError, true);
  assert.equal(content.requests.length, before + 1, 'the loopback server must not be reached');
  assert.match(svc.stderr(), /test-hook: refused connect to 93\.184\.216\.34/);
});

test('a call without a gateway credential, or with one for another service, is refused before any fetch', async () => {
  const url = `http://content.test:${content.port}/text`;
  const before = content.requests.length;
  const bare = await svc.client.callTool({ name: 'fetchText', arguments: { url } });
  assert.equal(bare.isError, true);
  assert.match(resultText(bare), /carries no gateway credential/);
  const foreign = await svc.client.callTool({ name: 'fetchText', arguments: { url }, _meta: await credentialMeta('fs', 'fetchText') });
  assert.equal(foreign.isError, true);
  assert.match(resultText(foreign), /for another service/);
  assert.equal(content.requests.length, before, 'a refused call never reaches the network');
  assert.equal((await fetchText(svc, { url })).isError, undefined, 'the same call with a valid credential works');
});

test('tool definition: strict schema, read-only, open world', async () => {
  const { tools } = await svc.client.listTools();
  assert.equal(tools.length, 1);
  const t = tools[0]!;
  assert.equal(t.name, 'fetchText');
  assert.equal(t.annotations?.readOnlyHint, true);
  assert.equal(t.annotations?.openWorldHint, true);
  assert.equal(t.inputSchema.additionalProperties, false);
  const bad = await fetchText(svc, { url: 'https://allowed.test/', follow: true });
  assert.equal(bad.isError, true);
  assert.match(resultText(bad), /unexpected property/);
});

function runMain(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--experimental-permission', ...codeReadFlags(), '--no-warnings', MAIN, ...args], {
    encoding: 'utf8',
    timeout: 15000,
    env: { PATH: process.env.PATH ?? '', ...env },
  });
}

test('config: bad flags exit 2; test flags need the env; https only by default', async () => {
  const cases: [string[], RegExp][] = [
    [['--allow-host', '*'], /would allow every host/],
    [['--allow-host', '*.com'], /too broad/],
    [['--allow-host', 'a.*.example.com'], /only allowed as a leading/],
    [['--allow-host', '[::1]'], /IPv6 literals/],
    [[], /at least one --allow-host/],
    [['--allow-host', 'a.example', '--allow-port', '70000'], /1\.\.65535/],
    [['--allow-host', 'a.example', '--max-redirects', '9'], /between 0 and 5/],
    [['--allow-host', 'a.example', '--test-allow-loopback'], /test-only/],
    [['--allow-host', 'a.example', '--test-resolve', 'a.example=127.0.0.1'], /test-only/],
    [['--allow-host', 'a.example', '--frobnicate'], /unknown flag/],
  ];
  for (const [args, msg] of cases) {
    const r = runMain([...args, '--insecure-no-credentials']);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, msg);
  }
  const check = runMain(['--allow-host', 'a.example', '--check', '--insecure-no-credentials']);
  assert.equal(check.status, 0, check.stderr);
  assert.equal(JSON.parse(check.stdout).status, 'ok');
  assert.equal(JSON.parse(check.stdout).credentials, 'insecure');
  const noCredentials = runMain(['--allow-host', 'a.example', '--check']);
  assert.equal(noCredentials.status, 2, 'the credential check is on by default');
  assert.match(noCredentials.stderr, /refusing to start: every call must carry a gateway credential/);
  const httpsOnly = await startService(
    'http',
    ['--allow-host', 'content.test', '--allow-port', String(content.port), '--test-resolve', 'content.test=127.0.0.1', '--test-allow-loopback'],
    { sandboxRead: [], env: HOOKS },
  );
  try {
    const r = await fetchText(httpsOnly, { url: `http://content.test:${content.port}/text` });
    assert.equal(r.isError, true);
    assert.match(resultText(r), /only https/);
  } finally {
    await httpsOnly.close();
  }
});

test('address classification and helpers (unit)', () => {
  for (const a of [
    '127.0.0.1',
    '10.0.0.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '::1',
    '::',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    'fe80::1',
    'fc00::1',
    'fd00:ec2::254',
    'ff02::1',
    '64:ff9b::a9fe:a9fe',
    '2002:7f00:1::',
    '2001:db8::1',
    '168.63.129.16',
  ]) {
    assert.ok(blockedReason(a), `${a} should be blocked`);
  }
  for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:93.184.216.34', '64:ff9b::5db8:d822']) assert.equal(blockedReason(a), undefined, a);
  assert.ok(isLoopback('127.9.9.9') && isLoopback('::1') && isLoopback('::ffff:127.0.0.1') && !isLoopback('10.0.0.1'));
  const allow = ['api.example.com', '*.corp.example'].map(parseHostPattern);
  assert.ok(hostAllowed(allow, 'api.example.com') && hostAllowed(allow, 'a.b.corp.example'));
  assert.ok(!hostAllowed(allow, 'corp.example') && !hostAllowed(allow, 'evilcorp.example') && !hostAllowed(allow, 'api.example.com.evil'));
  assert.equal(htmlToText('<p>a</p><p>b &#0; &bogus; &#x110000;</p>'), 'a\n\nb \uFFFD &bogus; \uFFFD');
});
