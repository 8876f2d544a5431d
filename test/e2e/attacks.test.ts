/**
 * The attack corpora THROUGH THE REAL GATEWAY: every path-escape case (real files, symlinks, FIFOs,
 * hard links) and every SSRF case (fake resolver answers, a real loopback redirector) goes through a
 * real gateway process to the real, sandboxed fs and http services. Each case must be refused, and the
 * corpora say by whom (`gateway.shipped` / `gateway.open`): the policy (JSON-RPC ERR_POLICY_DENIED)
 * or the service (a tool error). Nothing of the outside files or the loopback servers may leak.
 *
 * Three gateways, started in parallel:
 *  - shipped: the shipped policies plus a test-only purpose local-dev (loopback hosts), fs + the strict http service;
 *  - open:    a test-only policy copy that lets most cases through to fs + the strict http service,
 *             so the SERVICE guards are proven through the gateway too;
 *  - redirect: the open policy + an http service that may reach the loopback redirector, for the
 *             cases whose first hop is allowed and whose redirect must be refused.
 * The http service runs with MICRO_MCP_HTTP_TEST_HOOKS=1 (given only through the service's `env:`),
 * so its connect hook refuses anything outside loopback even if a guard were broken.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/client';
import { httpResource } from '../../src/policy/input.js';
import { buildFsFixture, loadPathEscape, loadSsrf, redirectorHandler, startTestServer } from '../corpora/harness.js';
import type { PathEscapeCase, Refuser, SsrfCase, TestServer } from '../corpora/harness.js';
import { callOutcome, fsServiceEntry, httpServiceEntry, inBatches, permissivePolicyDir, shippedPolicyDir, stopGateway } from '../helpers/attacks.js';
import type { Outcome } from '../helpers/attacks.js';
import { connect, startGateway } from '../helpers/harness.js';
import type { Gateway } from '../helpers/harness.js';

const HOOKS = { MICRO_MCP_HTTP_TEST_HOOKS: '1' };
const OPEN_PURPOSE = 'attack-tests';
const fsCorpus = loadPathEscape();
const ssrf = loadSsrf();
const fx = buildFsFixture(fsCorpus.fixture);
const direct = ssrf.cases.filter((c) => c.mode === 'direct');
const redirects = ssrf.cases.filter((c) => c.mode === 'redirect');

let redirector: TestServer;
let redirectTarget = '';
let policy: ReturnType<typeof permissivePolicyDir>;
let shippedPolicy: ReturnType<typeof shippedPolicyDir>;
const gws: Record<'shipped' | 'open' | 'redirect', Gateway | undefined> = { shipped: undefined, open: undefined, redirect: undefined };
const clients: Client[] = [];

const resolveFlags = ssrf.cases.flatMap((c) => Object.entries(c.resolve ?? {}).flatMap(([h, a]) => ['--test-resolve', `${h}=${a}`]));
const commonHttp = (ports: number[]) => [
  ...ssrf.allow_hosts.flatMap((h) => ['--allow-host', h]),
  '--allow-http',
  ...[...ssrf.allow_ports, ...ports].flatMap((p) => ['--allow-port', String(p)]),
  ...resolveFlags,
  '--timeout-ms',
  '3000',
];
const redirectorUrl = (c: SsrfCase) => c.arguments.url.replace('{{REDIRECTOR}}', `http://redirector.test:${redirector.port}`);

/** Every host the corpus names, for the open policy's purpose (computed as the gateway does). */
function corpusHosts(): string[] {
  const hosts = new Set<string>(['redirector.test']);
  for (const c of ssrf.cases) {
    const h = httpResource(c.arguments.url.replace('{{REDIRECTOR}}', 'http://redirector.test:1'), c.arguments.method).host;
    if (h) hosts.add(h);
    if (c.redirect_to) {
      const r = httpResource(c.redirect_to, 'GET').host;
      if (r) hosts.add(r);
    }
  }
  return [...hosts];
}

async function client(gw: Gateway, purpose: string): Promise<Client> {
  const token = await gw.token({ sub: 'mallory', groups: ['eng'], scopes: ['fs:read', 'http:fetch'], purpose });
  const c = await connect(gw, 'modern', { token });
  clients.push(c);
  return c;
}

before(async () => {
  redirector = await startTestServer(redirectorHandler(() => redirectTarget));
  policy = permissivePolicyDir(corpusHosts());
  shippedPolicy = shippedPolicyDir();
  const fs = fsServiceEntry(fx.rootFlags, fx.rootDirs);
  const strictHttp = httpServiceEntry(commonHttp([]), HOOKS);
  const loopHttp = httpServiceEntry([...commonHttp([redirector.port]), '--test-resolve', 'redirector.test=127.0.0.1', '--test-allow-loopback'], HOOKS);
  // A generous decision timeout: three gateways and their services share this machine's cores, and a
  // timed-out engine denies (engine_error), which would pass for a policy refusal it is not.
  const slack = { decision_timeout_ms: 5000 };
  const open = { ...slack, rego: { dir: policy.rego }, cedar: { dir: policy.cedar } };
  // Debug logging carries the services' stderr (the test hook's refusals) into the gateway output.
  const [a, b, c] = await Promise.all([
    startGateway({
      logging: { level: 'debug' },
      policy: { ...slack, rego: { dir: shippedPolicy.rego }, cedar: { dir: shippedPolicy.cedar } },
      services: { fs, http: strictHttp },
    }),
    startGateway({ logging: { level: 'debug' }, policy: open, services: { fs, http: strictHttp } }),
    startGateway({ logging: { level: 'debug' }, policy: open, services: { http: loopHttp } }),
  ]);
  Object.assign(gws, { shipped: a, open: b, redirect: c });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(Object.values(gws).map((g) => (g ? stopGateway(g) : undefined)));
  await redirector?.close();
  fx.cleanup();
  if (policy) rmSync(policy.dir, { recursive: true, force: true });
  if (shippedPolicy) rmSync(shippedPolicy.dir, { recursive: true, force: true });
});

/** Asserts one outcome: refused by the expected party, with nothing leaking. */
function assertRefused(id: string, o: Outcome, expected: Refuser, extraSecrets: string[] = []): void {
  assert.notEqual(o.kind, 'ok', `${id} was NOT refused: ${o.dump.slice(0, 300)}`);
  assert.equal(o.kind, expected, `${id}: expected a refusal by the ${expected}, got ${o.kind}: ${o.dump.slice(0, 300)}`);
  if (o.kind === 'policy') {
    assert.match(o.message, /denied by policy: /, id);
    assert.doesNotMatch(o.message, /engine_error/, `${id}: an engine failure is not a policy decision`);
  }
  if (o.kind === 'service') {
    assert.notEqual(o.code, 'refused_credential', `${id}: the service refused the gateway's credential instead of the attack`);
    assert.notEqual(o.code, 'internal', `${id}: an internal error is not a refusal`);
    assert.ok(o.message.length > 0, `${id}: no clear message`);
  }
  for (const secret of ['TOP-SECRET', 'root:x:0', fx.base, 'end of chain', ...extraSecrets]) {
    assert.ok(!o.dump.includes(secret), `${id} leaked "${secret}"`);
  }
}

async function runFs(gw: Gateway, purpose: string, which: 'shipped' | 'open') {
  const c = await client(gw, purpose);
  const outcomes = await inBatches(fsCorpus.cases, 4, (k: PathEscapeCase) => callOutcome(c, `fs.${k.tool}`, k.arguments));
  for (const [i, k] of fsCorpus.cases.entries()) assertRefused(`fs ${k.id} (${k.why}) [${which}]`, outcomes[i]!, k.gateway[which]);
  return outcomes;
}

async function runDirect(gw: Gateway, purpose: string, which: 'shipped' | 'open') {
  const c = await client(gw, purpose);
  const outcomes = await inBatches(direct, 4, (k: SsrfCase) => callOutcome(c, 'http.fetchText', k.arguments));
  for (const [i, k] of direct.entries()) assertRefused(`ssrf ${k.id} (${k.why}) [${which}]`, outcomes[i]!, k.gateway[which]);
  return outcomes;
}

describe('shipped policies + a test-only local-dev purpose', () => {
  test('path-escape corpus: every case refused, by the expected party', async () => {
    assert.ok(fsCorpus.cases.length >= 50, `corpus has ${fsCorpus.cases.length} cases`);
    const out = await runFs(gws.shipped!, 'local-dev', 'shipped');
    // /pub is no root this policy grants, so most cases stop at the policy; /eng cases reach the service.
    assert.ok(
      out.some((o) => o.kind === 'service'),
      'at least one case reached the fs service',
    );
  });

  test('SSRF corpus: every case refused, by the expected party; redirect cases never reach the redirector', async () => {
    assert.ok(ssrf.cases.length >= 50, `corpus has ${ssrf.cases.length} cases`);
    const out = await runDirect(gws.shipped!, 'local-dev', 'shipped');
    // Loopback literals pass the policy (local-dev allows 127.0.0.1) and meet the service's guard.
    assert.ok(out.filter((o) => o.kind === 'service').length >= 5, 'loopback spellings reached the http service');
    const c = await client(gws.shipped!, 'local-dev');
    const before = redirector.requests.length;
    for (const k of redirects) {
      redirectTarget = k.redirect_to ?? '';
      assertRefused(`ssrf ${k.id} [shipped]`, await callOutcome(c, 'http.fetchText', { ...k.arguments, url: redirectorUrl(k) }), k.gateway.shipped);
    }
    assert.equal(redirector.requests.length, before, 'the policy stopped every redirect case before any request');
    assert.doesNotMatch(gws.shipped!.output(), /test-hook: refused connect/, 'the guard refused; the last-line hook never had to');
  });

  test('denials name the policy rule, never the policy text or the arguments', async () => {
    const c = await client(gws.shipped!, 'local-dev');
    const o = await callOutcome(c, 'fs.read', { path: '/pub/link-to-secret' });
    assert.equal(o.kind, 'policy');
    assert.match(o.message, /fs_path_not_permitted/);
    assert.ok(!o.dump.includes('link-to-secret') && !o.dump.includes('_fs_roots'), o.dump);
  });
});

describe('open test policy: the services hold their ground behind the gateway', () => {
  test('path-escape corpus: every case refused; most by the fs service itself', async () => {
    const out = await runFs(gws.open!, OPEN_PURPOSE, 'open');
    const byService = out.filter((o) => o.kind === 'service').length;
    assert.ok(byService >= 40, `only ${byService} cases reached the fs service`);
  });

  test('SSRF corpus (direct): every case refused; most by the http service itself', async () => {
    const out = await runDirect(gws.open!, OPEN_PURPOSE, 'open');
    const byService = out.filter((o) => o.kind === 'service').length;
    assert.ok(byService >= 50, `only ${byService} cases reached the http service`);
    assert.doesNotMatch(gws.open!.output(), /test-hook: refused connect/, 'the guard refused every case before any connect');
  });

  test('SSRF corpus (redirect): the first hop is fetched, every redirect is refused by the service', async () => {
    const c = await client(gws.redirect!, OPEN_PURPOSE);
    for (const k of redirects) {
      redirectTarget = k.redirect_to ?? '';
      const before = redirector.requests.length;
      assertRefused(`ssrf ${k.id} (${k.why}) [open]`, await callOutcome(c, 'http.fetchText', { ...k.arguments, url: redirectorUrl(k) }), k.gateway.open);
      assert.ok(redirector.requests.length > before, `${k.id} never reached the redirector`);
    }
    assert.doesNotMatch(gws.redirect!.output(), /test-hook: refused connect/, 'no redirect hop got as far as a connect');
  });

  test('controls: the same gateways do serve allowed calls', async () => {
    const fsClient = await client(gws.open!, OPEN_PURPOSE);
    const ok = await callOutcome(fsClient, 'fs.read', { path: '/pub/readme.txt' });
    assert.equal(ok.kind, 'ok', ok.dump);
    assert.match(ok.dump, /public readme/);
    const eng = await callOutcome(await client(gws.shipped!, 'local-dev'), 'fs.read', { path: '/eng/notes.txt' });
    assert.equal(eng.kind, 'ok', eng.dump);
    const httpClient = await client(gws.redirect!, OPEN_PURPOSE);
    const chain = await callOutcome(httpClient, 'http.fetchText', { url: `http://redirector.test:${redirector.port}/chain/2` });
    assert.equal(chain.kind, 'ok', chain.dump);
    assert.match(chain.dump, /end of chain/);
  });
});
