import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../clock.js';
import { DEV_AUTHORIZATION_DEFAULTS, DevAuthorizationServer } from './dev-authorization.js';
import { type DevKey, ensureDevKey } from './dev.js';

const ISSUER = 'http://127.0.0.1:8080';
const RESOURCE = `${ISSUER}/mcp`;
const REDIRECT = 'http://localhost:7777/cb';

/** A clock the test moves by hand. */
function manualClock(start = 1_800_000_000_000): Clock & { advance(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
    clearTimeout: (h) => clearTimeout(h),
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('dev authorization server', () => {
  let dir: string;
  let key: DevKey;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-devas-'));
    key = await ensureDevKey(join(dir, 'keys'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const server = (clock: Clock) => new DevAuthorizationServer(ISSUER, RESOURCE, 'urn:micro-mcp:dev', key, DEV_AUTHORIZATION_DEFAULTS, clock);
  const clientOf = (as: DevAuthorizationServer): string => {
    const r = as.register({ redirect_uris: [REDIRECT] });
    assert.ok(!('error' in r));
    return String(r.body.client_id);
  };
  const codeFor = (as: DevAuthorizationServer, clientId: string) => {
    const verifier = randomBytes(32).toString('base64url');
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    });
    const r = as.authorize(q);
    assert.ok('redirect' in r);
    const u = new URL(r.redirect);
    assert.equal(u.searchParams.get('iss'), ISSUER);
    return { code: u.searchParams.get('code')!, verifier };
  };

  it('a code expires 60 s after it was issued', async () => {
    const clock = manualClock();
    const as = server(clock);
    const clientId = clientOf(as);
    const fresh = codeFor(as, clientId);
    clock.advance(59_999);
    const ok = await as.token(new URLSearchParams({ grant_type: 'authorization_code', client_id: clientId, code: fresh.code, code_verifier: fresh.verifier }));
    assert.equal(ok.status, 200);
    const late = codeFor(as, clientId);
    clock.advance(60_000);
    const r = await as.token(new URLSearchParams({ grant_type: 'authorization_code', client_id: clientId, code: late.code, code_verifier: late.verifier }));
    assert.deepEqual(r, { status: 400, error: 'invalid_grant', error_description: 'the authorization code is unknown, used or expired' });
  });

  it('a code is bound to the client it was issued to', async () => {
    const as = server(manualClock());
    const a = clientOf(as);
    const b = clientOf(as);
    const { code, verifier } = codeFor(as, a);
    const r = await as.token(new URLSearchParams({ grant_type: 'authorization_code', client_id: b, code, code_verifier: verifier }));
    assert.deepEqual(r, { status: 400, error: 'invalid_grant', error_description: 'the code was issued to another client' });
  });

  it('keeps at most 1000 registered clients, forgetting the oldest', () => {
    const as = server(manualClock());
    const first = clientOf(as);
    for (let i = 0; i < 1000; i++) clientOf(as);
    const r = as.authorize(new URLSearchParams({ client_id: first, response_type: 'code' }));
    assert.deepEqual(r, { status: 400, error: 'invalid_client', error_description: 'unknown client_id: register first (RFC 7591)' });
  });

  it('accepts only loopback redirect URIs', () => {
    const as = server(manualClock());
    for (const uri of ['http://127.0.0.2:1/cb', 'http://[::1]:9/cb', 'https://localhost/cb'])
      assert.ok(!('error' in as.register({ redirect_uris: [uri] })), uri);
    for (const uri of ['http://example.com/cb', 'http://localhost/cb#frag', 'myapp:/cb', 'http://127.0.0.1.evil.example/cb'])
      assert.equal((as.register({ redirect_uris: [uri] }) as { error: string }).error, 'invalid_redirect_uri', uri);
  });
});
