import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import { GatewayError, toHttpStatus } from '../errors.js';
import { createAuthenticator } from './authenticator.js';
import type { Authenticator, AuthenticatorContext } from './authenticator.js';
import { DEV_ISSUER } from './config.js';
import type { AuthConfig, JwtAuthConfig } from './config.js';

const ISSUER = 'https://idp.example.test/';
const RESOURCE = 'http://127.0.0.1:8080/mcp';
const META_URL = 'http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp';

interface TestKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function makeKey(kid: string, alg: 'RS256' | 'ES256' | 'EdDSA' = 'RS256'): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk };
}

const nowS = (): number => Math.floor(Date.now() / 1000);

/** Claims of a token issued at `t` (seconds), valid for 5 minutes. */
function baseClaims(t = nowS()): JWTPayload {
  return {
    iss: ISSUER,
    aud: RESOURCE,
    sub: 'alice',
    iat: t,
    nbf: t,
    exp: t + 300,
    jti: 'tok-1',
    scope: 'fs:read http:fetch',
    groups: ['eng'],
    azp: 'agent-cli',
  };
}

async function sign(key: TestKey, claims: JWTPayload = baseClaims(), header: Record<string, unknown> = {}): Promise<string> {
  const crit = Array.isArray(header.crit) ? Object.fromEntries((header.crit as string[]).map((c) => [c, true])) : undefined;
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey, crit ? { crit } : undefined);
}

const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A real JWKS endpoint on loopback, with a redirect, a hanging endpoint and fetch counters. */
class JwksServer {
  keys: JWK[] = [];
  hits = { jwks: 0, redirect: 0, slow: 0 };
  private server: Server = createServer((req, res) => {
    if (req.url === '/jwks') {
      this.hits.jwks++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: this.keys }));
    } else if (req.url === '/redirect') {
      this.hits.redirect++;
      res.writeHead(302, { location: '/jwks' });
      res.end();
    } else if (req.url === '/slow') {
      this.hits.slow++; // never answers: the client must give up on its own
    } else {
      res.writeHead(404).end();
    }
  });
  base = '';
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function expectCode(auth: Authenticator, header: string | undefined, code: string): Promise<GatewayError> {
  let caught: unknown;
  try {
    await auth.authenticate(header);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof GatewayError, `expected GatewayError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  // Never echo the token (or any part of it) in the message.
  if (header && header.length > 20) assert.ok(!caught.message.includes(header.slice(7, 40)));
  return caught;
}

describe('createAuthenticator (jwt mode, JWKS over HTTP)', () => {
  const jwks = new JwksServer();
  let k1: TestKey;
  let kEc: TestKey;
  let outsider: TestKey;
  let auth: Authenticator;
  const cfg = (): JwtAuthConfig & { jwks_url: string } => ({
    mode: 'jwt',
    issuer: ISSUER,
    jwks_url: `${jwks.base}/jwks`,
    scopes_supported: ['fs:read', 'http:fetch'],
    jwks_cooldown_s: 0,
  });

  before(async () => {
    await jwks.start();
    k1 = await makeKey('k1', 'RS256');
    kEc = await makeKey('k-ec', 'ES256');
    outsider = await makeKey('k-outsider', 'RS256');
    // A careless IdP publishing a symmetric and a private key: both must be ignored.
    jwks.keys = [k1.jwk, kEc.jwk, { kty: 'oct', k: 'c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0', kid: 'sym' }];
    auth = await createAuthenticator(cfg(), { resource: RESOURCE, loopback: false });
  });
  after(() => jwks.stop());

  it('accepts a valid token and maps claims to the principal', async () => {
    const p = await auth.authenticate(`Bearer ${await sign(k1)}`);
    assert.equal(p.id, 'alice');
    assert.equal(p.type, 'user');
    assert.equal(p.issuer, ISSUER);
    assert.deepEqual(p.groups, ['eng']);
    assert.deepEqual(p.scopes, ['fs:read', 'http:fetch']);
    assert.deepEqual(p.client, { id: 'agent-cli' });
    assert.equal(p.purpose, null);
    assert.equal(p.token_id, 'tok-1');
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.scopes));
    const pe = await auth.authenticate(`bearer ${await sign(kEc)}`); // scheme is case-insensitive
    assert.equal(pe.id, 'alice');
  });

  describe('forged and broken tokens: each refused with 401 and a precise code', () => {
    const cases: Array<[string, () => Promise<string | undefined>, string]> = [
      ['no header', async () => undefined, 'ERR_AUTH_MISSING'],
      ['empty header', async () => '', 'ERR_AUTH_MISSING'],
      ['another scheme', async () => 'Basic YWxpY2U6cHc=', 'ERR_AUTH_MISSING'],
      ['bearer without a token', async () => 'Bearer ', 'ERR_AUTH_INVALID'],
      ['expired', async () => `Bearer ${await sign(k1, { ...baseClaims(), iat: nowS() - 600, exp: nowS() - 120 })}`, 'ERR_AUTH_EXPIRED'],
      ['not yet valid (nbf)', async () => `Bearer ${await sign(k1, { ...baseClaims(), nbf: nowS() + 300 })}`, 'ERR_AUTH_NOT_YET_VALID'],
      ['issued in the future (iat)', async () => `Bearer ${await sign(k1, { ...baseClaims(), iat: nowS() + 300 })}`, 'ERR_AUTH_NOT_YET_VALID'],
      ['wrong issuer', async () => `Bearer ${await sign(k1, { ...baseClaims(), iss: 'https://evil.test/' })}`, 'ERR_AUTH_ISSUER'],
      ['wrong audience', async () => `Bearer ${await sign(k1, { ...baseClaims(), aud: 'http://127.0.0.1:9999/mcp' })}`, 'ERR_AUTH_AUDIENCE'],
      ['alg none', async () => `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(baseClaims())}.`, 'ERR_AUTH_ALGORITHM'],
      [
        'HS256 signed with the public key',
        async () => {
          const pem = await exportSPKI(k1.publicKey);
          const input = `${b64({ alg: 'HS256', kid: 'k1' })}.${b64(baseClaims())}`;
          return `Bearer ${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
        },
        'ERR_AUTH_ALGORITHM',
      ],
      [
        'HS256 with the kid of a symmetric key the JWKS leaked',
        async () => {
          const input = `${b64({ alg: 'HS256', kid: 'sym' })}.${b64(baseClaims())}`;
          return `Bearer ${input}.${createHmac('sha256', 'secretsecretsecretsecretsecret').update(input).digest('base64url')}`;
        },
        'ERR_AUTH_ALGORITHM',
      ],
      ['unknown kid', async () => `Bearer ${await sign(outsider)}`, 'ERR_AUTH_KEY_UNKNOWN'],
      ['known kid, other key', async () => `Bearer ${await sign({ ...outsider, kid: 'k1' })}`, 'ERR_AUTH_SIGNATURE'],
      [
        'tampered payload',
        async () => {
          const [h, , s] = (await sign(k1)).split('.');
          return `Bearer ${h}.${b64({ ...baseClaims(), sub: 'root', groups: ['admin'] })}.${s}`;
        },
        'ERR_AUTH_SIGNATURE',
      ],
      [
        'missing exp',
        async () => {
          const c = baseClaims();
          delete c.exp;
          return `Bearer ${await sign(k1, c)}`;
        },
        'ERR_AUTH_CLAIM_MISSING',
      ],
      [
        'missing sub',
        async () => {
          const c = baseClaims();
          delete c.sub;
          return `Bearer ${await sign(k1, c)}`;
        },
        'ERR_AUTH_CLAIM_MISSING',
      ],
      ['oversized', async () => `Bearer ${await sign(k1, { ...baseClaims(), pad: 'x'.repeat(9000) })}`, 'ERR_AUTH_TOO_LARGE'],
      ['oversized garbage header', async () => `Bearer ${'a'.repeat(100_000)}`, 'ERR_AUTH_TOO_LARGE'],
      ['garbage', async () => 'Bearer not-a-jwt', 'ERR_AUTH_INVALID'],
      ['three segments of garbage', async () => 'Bearer abc.def.ghi', 'ERR_AUTH_INVALID'],
      ['header is not JSON', async () => `Bearer ${Buffer.from('{oops').toString('base64url')}.${b64(baseClaims())}.sig`, 'ERR_AUTH_INVALID'],
      ['a JWE (five segments)', async () => 'Bearer a.b.c.d.e', 'ERR_AUTH_INVALID'],
      ['token in a second header value', async () => `Bearer ${await sign(k1)} Bearer x`, 'ERR_AUTH_INVALID'],
      ['unsupported crit header', async () => `Bearer ${await sign(k1, baseClaims(), { crit: ['x-unknown'], 'x-unknown': 1 })}`, 'ERR_AUTH_INVALID'],
    ];
    for (const [name, make, code] of cases) {
      it(`${name} -> ${code}`, async () => {
        const header = await make();
        const err = await expectCode(auth, header, code);
        assert.equal(toHttpStatus(err.code), 401);
        const ch = auth.challenge(err);
        assert.equal(ch.status, 401);
        assert.match(ch.headers['www-authenticate']!, new RegExp(`resource_metadata="${META_URL}"`));
        if (code !== 'ERR_AUTH_MISSING') assert.match(ch.headers['www-authenticate']!, /^Bearer error="invalid_token"/);
      });
    }
    it('still serves valid tokens after the whole table', async () => {
      const p = await auth.authenticate(`Bearer ${await sign(k1, { ...baseClaims(), jti: 'after' })}`);
      assert.equal(p.id, 'alice');
    });
  });

  it('refreshes the JWKS on an unknown kid, and a newly published key then verifies', async () => {
    const k2 = await makeKey('k2', 'ES256');
    const token = `Bearer ${await sign(k2)}`;
    await expectCode(auth, token, 'ERR_AUTH_KEY_UNKNOWN');
    const before = jwks.hits.jwks;
    jwks.keys = [...jwks.keys, k2.jwk];
    const p = await auth.authenticate(token);
    assert.equal(p.id, 'alice');
    assert.equal(jwks.hits.jwks, before + 1, 'exactly one refresh');
  });

  it('rate-limits unknown-kid refreshes with the cooldown, and refreshes again once it is over', async () => {
    let clock = Date.now();
    const a = await createAuthenticator({ ...cfg(), jwks_cooldown_s: 60 }, { resource: RESOURCE, loopback: false, now: () => clock });
    await a.authenticate(`Bearer ${await sign(k1)}`);
    const start = jwks.hits.jwks;
    for (let i = 0; i < 5; i++) await expectCode(a, `Bearer ${await sign(outsider)}`, 'ERR_AUTH_KEY_UNKNOWN');
    assert.equal(jwks.hits.jwks, start, 'no fetch during the cooldown');
    clock += 60_000;
    await expectCode(a, `Bearer ${await sign(outsider)}`, 'ERR_AUTH_KEY_UNKNOWN');
    assert.equal(jwks.hits.jwks, start + 1, 'one fetch once the cooldown is over');
  });

  it('does not follow a redirect from the JWKS URL', async () => {
    const a = await createAuthenticator({ ...cfg(), jwks_url: `${jwks.base}/redirect` }, { resource: RESOURCE, loopback: false });
    const before = jwks.hits.jwks;
    const err = await expectCode(a, `Bearer ${await sign(k1)}`, 'ERR_AUTH_JWKS_UNAVAILABLE');
    assert.equal(jwks.hits.redirect, 1);
    assert.equal(jwks.hits.jwks, before, 'redirect target never fetched');
    const ch = a.challenge(err);
    assert.equal(ch.status, 503);
    assert.equal(ch.headers['www-authenticate'], undefined);
  });

  it('gives up on a JWKS endpoint that does not answer (timeout)', async () => {
    const a = await createAuthenticator({ ...cfg(), jwks_url: `${jwks.base}/slow`, jwks_timeout_ms: 100 }, { resource: RESOURCE, loopback: false });
    // The endpoint never answers: only the client's own timeout can end the wait.
    const err = await expectCode(a, `Bearer ${await sign(k1)}`, 'ERR_AUTH_JWKS_UNAVAILABLE');
    assert.equal(err.message, 'the key set endpoint timed out');
    assert.equal(jwks.hits.slow, 1);
  });

  it('refuses an algorithm outside the configured allowlist', async () => {
    const a = await createAuthenticator({ ...cfg(), algorithms: ['ES256'] }, { resource: RESOURCE, loopback: false });
    await expectCode(a, `Bearer ${await sign(k1)}`, 'ERR_AUTH_ALGORITHM');
    assert.equal((await a.authenticate(`Bearer ${await sign(kEc)}`)).id, 'alice');
  });

  it('enforces configured required claims and token type', async () => {
    const a = await createAuthenticator({ ...cfg(), required_claims: ['client_id'], token_type: 'at+jwt' }, { resource: RESOURCE, loopback: false });
    await expectCode(a, `Bearer ${await sign(k1, baseClaims(), { typ: 'at+jwt' })}`, 'ERR_AUTH_CLAIM_MISSING');
    const ok = await a.authenticate(`Bearer ${await sign(k1, { ...baseClaims(), client_id: 'c' }, { typ: 'at+jwt' })}`);
    assert.equal(ok.id, 'alice');
    await expectCode(a, `Bearer ${await sign(k1, { ...baseClaims(), client_id: 'c' }, { typ: 'JWT' })}`, 'ERR_AUTH_INVALID');
  });

  it('maps claims as configured: nested groups, scp arrays, client, actor chain, purpose, attributes', async () => {
    const a = await createAuthenticator(
      {
        ...cfg(),
        claims: {
          subject: 'preferred_username',
          groups: 'realm_access.roles',
          scopes: ['scope', 'scp'],
          client: ['azp', 'client_id'],
          actor: 'act',
          purpose: 'purpose',
          attributes: ['email', 'department', 'secret_object'],
        },
      },
      { resource: RESOURCE, loopback: false },
    );
    const c: JWTPayload = {
      ...baseClaims(),
      preferred_username: 'bob',
      realm_access: { roles: ['ops', 'eng'] },
      scp: ['fs:read', 'fs:write'],
      client_id: 'claude',
      act: { sub: 'agent-7', act: { sub: 'orchestrator' } },
      purpose: 'incident-4711',
      email: 'bob@example.test',
      department: 'sre',
      secret_object: { nested: true },
    };
    delete c.scope;
    delete c.azp;
    delete c.groups;
    const p = await a.authenticate(`Bearer ${await sign(k1, c)}`);
    assert.equal(p.id, 'bob');
    assert.deepEqual(p.groups, ['ops', 'eng']);
    assert.deepEqual(p.scopes, ['fs:read', 'fs:write']);
    assert.deepEqual(p.client, { id: 'claude' });
    assert.equal(p.purpose, 'incident-4711');
    assert.deepEqual(p.attributes, {
      actor: 'agent-7',
      actor_chain: ['agent-7', 'orchestrator'],
      email: 'bob@example.test',
      department: 'sre',
    });
  });

  it('judges exp, nbf and iat by the injected clock', async () => {
    const c = baseClaims();
    let clock = c.iat! * 1000;
    const a = await createAuthenticator(
      { ...cfg(), clock_tolerance_s: 0, token_cache: { max_entries: 0 } },
      { resource: RESOURCE, loopback: false, now: () => clock },
    );
    const token = `Bearer ${await sign(k1, c)}`;
    assert.equal((await a.authenticate(token)).id, 'alice');
    clock = c.exp! * 1000;
    assert.deepEqual((await expectCode(a, token, 'ERR_AUTH_EXPIRED')).data, { claim: 'exp' });
    clock = (c.nbf! - 1) * 1000;
    assert.deepEqual((await expectCode(a, token, 'ERR_AUTH_NOT_YET_VALID')).data, { claim: 'nbf' });
    const noNbf = baseClaims();
    delete noNbf.nbf;
    clock = (noNbf.iat! - 1) * 1000;
    assert.deepEqual((await expectCode(a, `Bearer ${await sign(k1, noNbf)}`, 'ERR_AUTH_NOT_YET_VALID')).data, { claim: 'iat' });
  });

  it('caches verified tokens by hash and never serves one past its exp', async () => {
    const t = nowS();
    let clock = t * 1000;
    const a = await createAuthenticator({ ...cfg(), clock_tolerance_s: 0 }, { resource: RESOURCE, loopback: false, now: () => clock });
    const exp = t + 2;
    const token = `Bearer ${await sign(kEc, { ...baseClaims(t), exp })}`;
    await a.authenticate(token);
    await a.authenticate(token);
    assert.deepEqual(a.stats(), { cacheHits: 1, cacheMisses: 1, cacheSize: 1 });
    clock = exp * 1000 - 1;
    await a.authenticate(token);
    assert.equal(a.stats().cacheHits, 2, 'served from the cache until the last millisecond before exp');
    clock = exp * 1000;
    await expectCode(a, token, 'ERR_AUTH_EXPIRED');
    assert.deepEqual(a.stats(), { cacheHits: 2, cacheMisses: 2, cacheSize: 0 }, 'the expired entry was dropped, not served');
  });

  it('re-verifies a cached token after max_age_s, and caches nothing with max_entries 0', async () => {
    let clock = Date.now();
    const a = await createAuthenticator({ ...cfg(), token_cache: { max_age_s: 1 } }, { resource: RESOURCE, loopback: false, now: () => clock });
    const token = `Bearer ${await sign(kEc)}`;
    await a.authenticate(token);
    clock += 999;
    await a.authenticate(token);
    assert.deepEqual(a.stats(), { cacheHits: 1, cacheMisses: 1, cacheSize: 1 });
    clock += 1;
    assert.equal((await a.authenticate(token)).id, 'alice');
    assert.deepEqual(a.stats(), { cacheHits: 1, cacheMisses: 2, cacheSize: 1 }, 'verified again, then cached again');

    const noCache = await createAuthenticator({ ...cfg(), token_cache: { max_entries: 0 } }, { resource: RESOURCE, loopback: false });
    await noCache.authenticate(token);
    await noCache.authenticate(token);
    assert.deepEqual(noCache.stats(), { cacheHits: 0, cacheMisses: 0, cacheSize: 0 });
  });

  describe('token hygiene', () => {
    it('refuses a token meant to live longer than max_token_lifetime_s (default one day), with or without iat', async () => {
      const t = nowS();
      const century = `Bearer ${await sign(k1, { ...baseClaims(t), exp: t + 100 * 365 * 86400 })}`;
      assert.deepEqual((await expectCode(auth, century, 'ERR_AUTH_LIFETIME')).data, { claim: 'exp', max_lifetime_s: 86400 });
      const day = `Bearer ${await sign(k1, { ...baseClaims(t), exp: t + 86400 })}`;
      assert.equal((await auth.authenticate(day)).id, 'alice', 'exactly the ceiling is accepted');
      const noIat = baseClaims(t);
      delete noIat.iat;
      noIat.exp = t + 2 * 86400;
      await expectCode(auth, `Bearer ${await sign(k1, noIat)}`, 'ERR_AUTH_LIFETIME');
      const short = await createAuthenticator({ ...cfg(), max_token_lifetime_s: 60 }, { resource: RESOURCE, loopback: false });
      await expectCode(short, `Bearer ${await sign(k1, baseClaims(t))}`, 'ERR_AUTH_LIFETIME');
      const e = await expectCode(auth, century, 'ERR_AUTH_LIFETIME');
      assert.equal(toHttpStatus(e.code), 401);
    });

    it('refuses control characters and lone surrogates in the claims policies compare, naming only the claim', async () => {
      const cases: Array<[string, JWTPayload]> = [
        ['subject', { sub: 'alice\u0000admin' }],
        ['subject', { sub: 'alice\u001b[31m' }],
        ['groups', { groups: ['eng', 'ops\nadmin'] }],
        ['scopes', { scope: 'fs:read \u0085x' }],
        ['client', { azp: 'cli\u007f' }],
        ['subject', { sub: 'bob\uD800' }],
      ];
      for (const [claim, extra] of cases) {
        const e = await expectCode(auth, `Bearer ${await sign(k1, { ...baseClaims(), jti: `cc-${claim}-${Math.random()}`, ...extra })}`, 'ERR_AUTH_INVALID');
        assert.deepEqual(e.data, { claim }, JSON.stringify(extra));
        assert.ok(!e.message.includes('alice') && !e.message.includes('admin'), 'the value is never echoed');
      }
      const ok = await auth.authenticate(`Bearer ${await sign(k1, { ...baseClaims(), sub: 'ålice 👩‍💻', jti: 'printable' })}`);
      assert.equal(ok.id, 'ålice 👩‍💻', 'printable Unicode is fine');
    });

    it('single_use_jti: a token with a jti is accepted once, even with the cache on; tokens without one are reusable', async () => {
      let clock = Date.now();
      const a = await createAuthenticator({ ...cfg(), single_use_jti: true }, { resource: RESOURCE, loopback: false, now: () => clock });
      const t = Math.floor(clock / 1000);
      const once = `Bearer ${await sign(k1, { ...baseClaims(t), jti: 'one-shot' })}`;
      assert.equal((await a.authenticate(once)).id, 'alice');
      assert.deepEqual((await expectCode(a, once, 'ERR_AUTH_REPLAYED')).data, { claim: 'jti' });
      const noJti = baseClaims(t);
      delete noJti.jti;
      const reusable = `Bearer ${await sign(k1, noJti)}`;
      await a.authenticate(reusable);
      assert.equal((await a.authenticate(reusable)).id, 'alice');
      // Remembered as long as the token could verify: exp plus the clock tolerance (30 s by default).
      clock = (t + 300 + 29) * 1000;
      await expectCode(a, once, 'ERR_AUTH_REPLAYED');
      clock = (t + 300 + 30) * 1000;
      await expectCode(a, once, 'ERR_AUTH_EXPIRED');
    });

    it('single_use_jti with a full replay memory refuses new single-use tokens (503), never forgets an id early', async () => {
      const a = await createAuthenticator({ ...cfg(), single_use_jti: true, replay_cache_max_entries: 2 }, { resource: RESOURCE, loopback: false });
      for (const id of ['r1', 'r2']) await a.authenticate(`Bearer ${await sign(k1, { ...baseClaims(), jti: id })}`);
      const e = await expectCode(a, `Bearer ${await sign(k1, { ...baseClaims(), jti: 'r3' })}`, 'ERR_AUTH_REPLAY_CACHE_FULL');
      assert.equal(toHttpStatus(e.code), 503);
      assert.equal(a.challenge(e).status, 503);
      await expectCode(a, `Bearer ${await sign(k1, { ...baseClaims(), jti: 'r1' })}`, 'ERR_AUTH_REPLAYED');
    });
  });
});

describe('challenges and Protected Resource Metadata', () => {
  let auth: Authenticator;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-auth-'));
    const k = await makeKey('f1', 'ES256');
    await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [k.jwk] }));
    auth = await createAuthenticator(
      { mode: 'jwt', issuer: ISSUER, jwks_file: join(dir, 'jwks.json'), scopes_supported: ['fs:read', 'http:fetch'] },
      { resource: RESOURCE, loopback: false },
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('advertises the path-suffixed metadata URL and describes this resource', () => {
    assert.equal(auth.resourceMetadataUrl, META_URL);
    assert.deepEqual(auth.protectedResourceMetadata(), {
      resource: RESOURCE,
      authorization_servers: [ISSUER],
      scopes_supported: ['fs:read', 'http:fetch'],
      bearer_methods_supported: ['header'],
      resource_name: 'Micro-MCP gateway',
    });
  });

  it('401 for a missing token carries resource_metadata and scope, without an error code', () => {
    const ch = auth.challenge(new GatewayError('ERR_AUTH_MISSING', 'x'));
    assert.equal(ch.status, 401);
    assert.equal(ch.headers['www-authenticate'], `Bearer resource_metadata="${META_URL}", scope="fs:read http:fetch"`);
    assert.equal(ch.body.code, 'ERR_AUTH_MISSING');
  });

  it('401 for an invalid token says invalid_token with a description', () => {
    const ch = auth.challenge(new GatewayError('ERR_AUTH_EXPIRED', 'x'));
    assert.equal(
      ch.headers['www-authenticate'],
      `Bearer error="invalid_token", error_description="the token has expired", resource_metadata="${META_URL}", scope="fs:read http:fetch"`,
    );
  });

  it('403 insufficient_scope names the scope needed (step-up)', () => {
    // What the edge raises when only more scope would allow a call (src/http/app.ts).
    const ch = auth.challenge(new GatewayError('ERR_INSUFFICIENT_SCOPE', 'x', { required_scopes: ['fs:read', 'fs:write'] }));
    assert.equal(ch.status, 403);
    assert.equal(
      ch.headers['www-authenticate'],
      `Bearer error="insufficient_scope", error_description="the token lacks the scope this request needs", resource_metadata="${META_URL}", scope="fs:read fs:write"`,
    );
    assert.equal(ch.body.error, 'insufficient_scope');
  });

  it('keeps header injection out of the scope parameter', () => {
    const ch = auth.challenge(new GatewayError('ERR_INSUFFICIENT_SCOPE', 'x', { required_scopes: ['a" , evil="1\r\nX: y'] }));
    assert.ok(!/[\r\n]/.test(ch.headers['www-authenticate']!));
    assert.ok(!ch.headers['www-authenticate']!.includes('evil="1'));
    assert.match(ch.headers['www-authenticate']!, /, scope="a , evil=1X: y"$/);
  });

  it('re-reads a JWKS file when a token names a new kid', async () => {
    const k = await makeKey('f1', 'ES256');
    const k2 = await makeKey('f2', 'ES256');
    const file = join(dir, 'rot.json');
    await writeFile(file, JSON.stringify({ keys: [k.jwk] }));
    const a = await createAuthenticator({ mode: 'jwt', issuer: ISSUER, jwks_file: file, jwks_cooldown_s: 0 }, { resource: RESOURCE, loopback: false });
    assert.equal((await a.authenticate(`Bearer ${await sign(k)}`)).id, 'alice');
    await writeFile(file, JSON.stringify({ keys: [k.jwk, k2.jwk] }));
    assert.equal((await a.authenticate(`Bearer ${await sign(k2)}`)).id, 'alice');
  });
});

// Ranges, enums and the choice of key source are the schema's (schema.test.ts); these checks need
// the listener or a parsed URL, which the schema cannot see.
describe('configuration the schema cannot judge is refused at construction', () => {
  const offLoopback = { resource: RESOURCE, loopback: false };
  const bad: Array<[string, AuthConfig, AuthenticatorContext, string, string]> = [
    [
      'dev mode off loopback',
      { mode: 'dev' },
      offLoopback,
      'auth.mode',
      'dev mode trusts a local key and is allowed only when the gateway listens on loopback',
    ],
    [
      'the dev issuer off loopback',
      { mode: 'jwt', issuer: DEV_ISSUER, jwks_url: 'https://idp.test/jwks' },
      offLoopback,
      'auth.issuer',
      'the dev issuer is trusted only when the gateway listens on loopback',
    ],
    [
      'plain http JWKS off loopback',
      { mode: 'jwt', issuer: ISSUER, jwks_url: 'http://idp.test/jwks' },
      offLoopback,
      'auth.jwks_url',
      'jwks_url must use https (http is allowed only on loopback)',
    ],
    [
      'plain http JWKS on a host that only starts like loopback',
      { mode: 'jwt', issuer: ISSUER, jwks_url: 'http://127.0.0.1.evil.test/jwks' },
      offLoopback,
      'auth.jwks_url',
      'jwks_url must use https (http is allowed only on loopback)',
    ],
    [
      'a resource URI with a fragment',
      { mode: 'jwt', issuer: ISSUER, jwks_url: 'https://idp.test/jwks' },
      { resource: `${RESOURCE}#x`, loopback: false },
      'auth.resource',
      'the resource URI must be an http(s) URL without a fragment',
    ],
  ];
  for (const [name, c, ctx, key, message] of bad) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(createAuthenticator(c, ctx), (e: unknown) => {
        assert.ok(e instanceof GatewayError, String(e));
        assert.equal(e.code, 'ERR_CONFIG_INVALID');
        assert.equal(e.data?.key, key);
        assert.equal(e.message, message);
        return true;
      });
    });
  }
});
