// The service-credential contract (schemas/contracts/service-credential.ts) from both sides: the
// gateway's minter (src/auth) against the real verifier services run (services/common/credential.ts).
// It lives in test/ because it is the one place both sides meet; production code never crosses.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { CredentialError, createCredentialVerifier, credentialVerifierFromEnv } from '../../services/common/credential.js';
import type { CredentialVerifier } from '../../services/common/credential.js';
import { GatewayError } from '../../src/errors.js';
import { ensureDevKey, mintDevToken } from '../../src/auth/dev.js';
import { createServiceCredentialMinter } from '../../src/auth/service-credentials.js';
import type { Minter } from '../../src/auth/service-credentials.js';

const alice = { id: 'alice', client: { id: 'claude' } };

async function refused(v: CredentialVerifier, token: string | undefined, tool: string, code: string): Promise<void> {
  await assert.rejects(v.verify(token, { tool }), (e: unknown) => {
    assert.ok(e instanceof CredentialError, String(e));
    assert.equal(e.code, code);
    if (token) assert.ok(!e.message.includes(token.slice(0, 30)));
    return true;
  });
}

describe('service credentials: minter and service verifier', () => {
  let dir: string;
  let minter: Minter;
  let fsVerifier: CredentialVerifier;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-cred-'));
    minter = await createServiceCredentialMinter({ ttl_s: 30, jwks_file: join(dir, 'gateway-jwks.json'), autoRotate: false });
    const env = minter.serviceEnv('fs');
    fsVerifier = credentialVerifierFromEnv(env);
  });
  after(async () => {
    minter.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('mints a narrow, short-lived token the service accepts', async () => {
    const token = await minter.mint({ service: 'fs', principal: alice, tool: 'read', purpose: 'incident-4711', decisionId: 'dec-1' });
    const header = decodeProtectedHeader(token);
    assert.equal(header.alg, 'EdDSA', 'Ed25519 unless configured');
    assert.equal(typeof header.kid, 'string');
    assert.deepEqual(Object.keys(minter.jwks().keys[0]!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x'], 'a public key only');
    assert.deepEqual({ ...minter.jwks().keys[0], x: undefined }, { kty: 'OKP', crv: 'Ed25519', kid: header.kid, alg: 'EdDSA', use: 'sig', x: undefined });
    const claims = decodeJwt(token);
    assert.equal(claims.aud, 'micro-mcp:service:fs');
    assert.equal(claims.iss, 'micro-mcp:gateway');
    assert.ok(claims.exp! - claims.iat! <= 60);
    const got = await fsVerifier.verify(token, { tool: 'read' });
    assert.equal(got.sub, 'alice');
    assert.equal(got.scope, 'tool:read');
    assert.equal(got.purpose, 'incident-4711');
    assert.equal(got.decision_id, 'dec-1');
    assert.equal(got.client_id, 'claude');
    assert.equal((await stat(minter.jwksFile!)).mode & 0o777, 0o644);
  });

  it('with alg ES256 it signs with P-256; services accept it by default, and a service pinned to EdDSA refuses it', async () => {
    const es = await createServiceCredentialMinter({ ttl_s: 30, alg: 'ES256', jwks_file: join(dir, 'es256-jwks.json'), autoRotate: false });
    try {
      const token = await es.mint({ service: 'fs', principal: alice, tool: 'read', purpose: null, decisionId: 'dec-es' });
      assert.equal(decodeProtectedHeader(token).alg, 'ES256');
      assert.deepEqual(Object.keys(es.jwks().keys[0]!).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'], 'a public key only');
      assert.equal(es.jwks().keys[0]!.crv, 'P-256');
      const env = es.serviceEnv('fs');
      assert.equal((await credentialVerifierFromEnv(env).verify(token, { tool: 'read' })).decision_id, 'dec-es');
      const edOnly = createCredentialVerifier({
        audience: env.MICRO_MCP_CREDENTIAL_AUDIENCE!,
        issuer: env.MICRO_MCP_CREDENTIAL_ISSUER!,
        jwksFile: env.MICRO_MCP_CREDENTIAL_JWKS_FILE!,
        algorithms: ['EdDSA'],
      });
      await refused(edOnly, token, 'read', 'ERR_CREDENTIAL_INVALID');
    } finally {
      es.close();
    }
  });

  it('refuses a call without a credential', async () => {
    await refused(fsVerifier, undefined, 'read', 'ERR_CREDENTIAL_MISSING');
    await refused(fsVerifier, '', 'read', 'ERR_CREDENTIAL_MISSING');
  });

  it('refuses a credential minted for another service', async () => {
    const token = await minter.mint({ service: 'http', principal: alice, tool: 'read', purpose: null, decisionId: 'dec-2' });
    await refused(fsVerifier, token, 'read', 'ERR_CREDENTIAL_AUDIENCE');
  });

  it('refuses a credential for another tool', async () => {
    const token = await minter.mint({ service: 'fs', principal: alice, tool: 'read', purpose: null, decisionId: 'dec-3' });
    await refused(fsVerifier, token, 'write', 'ERR_CREDENTIAL_SCOPE');
  });

  it('refuses an expired credential', async () => {
    const past = await createServiceCredentialMinter({
      ttl_s: 30,
      jwks_file: minter.jwksFile!,
      autoRotate: false,
      now: () => Date.now() - 120_000,
    });
    const token = await past.mint({ service: 'fs', principal: alice, tool: 'read', purpose: null, decisionId: 'dec-4' });
    const v = createCredentialVerifier({ audience: 'micro-mcp:service:fs', issuer: 'micro-mcp:gateway', jwksFile: minter.jwksFile! });
    await refused(v, token, 'read', 'ERR_CREDENTIAL_EXPIRED');
    past.close();
    // Restore the main minter's keys in the shared file.
    await minter.rotate();
  });

  it("refuses the caller's own bearer token (no passthrough) and tokens from any other key", async () => {
    const dev = await ensureDevKey(join(dir, 'dev'));
    const userToken = await mintDevToken({ sub: 'alice', ttl: 60, audience: 'micro-mcp:service:fs', issuer: 'micro-mcp:gateway', key: dev });
    await refused(fsVerifier, userToken, 'read', 'ERR_CREDENTIAL_INVALID');
    const other = await createServiceCredentialMinter({ autoRotate: false });
    const forged = await other.mint({ service: 'fs', principal: alice, tool: 'read', purpose: null, decisionId: 'x' });
    await refused(fsVerifier, forged, 'read', 'ERR_CREDENTIAL_INVALID');
    other.close();
  });

  it('rotation keeps in-flight tokens valid and retires old keys after their tokens expired', async () => {
    let clock = Date.now();
    const m = await createServiceCredentialMinter({
      ttl_s: 30,
      rotate_every_s: 60,
      jwks_file: join(dir, 'rot-jwks.json'),
      autoRotate: false,
      now: () => clock,
    });
    const v = createCredentialVerifier({ audience: 'micro-mcp:service:fs', issuer: m.issuer, jwksFile: m.jwksFile! });
    const inflight = await m.mint({ service: 'fs', principal: alice, tool: 'read', purpose: null, decisionId: 'd1' });
    await v.verify(inflight, { tool: 'read' }); // verifier has now cached the pre-rotation file
    const kidA = decodeProtectedHeader(inflight).kid;
    assert.equal(m.jwks().keys[0]!.kid, kidA, 'the signing key is published first');
    const published = m.jwks().keys[1]!.kid;
    await m.rotate();
    const fresh = await m.mint({ service: 'fs', principal: alice, tool: 'read', purpose: null, decisionId: 'd2' });
    const kidB = decodeProtectedHeader(fresh).kid;
    assert.notEqual(kidA, kidB);
    assert.equal(kidB, published, 'the new signing key is the one published second before the rotation');
    assert.equal(m.jwks().keys[0]!.kid, kidB, 'and is now published first');
    await v.verify(inflight, { tool: 'read' }); // old key still published
    await v.verify(fresh, { tool: 'read' }); // new key was pre-published before it signed anything
    const file = JSON.parse(await readFile(m.jwksFile!, 'utf8')) as { keys: Array<{ kid: string; d?: string }> };
    assert.ok(file.keys.some((k) => k.kid === kidA) && file.keys.some((k) => k.kid === kidB));
    assert.ok(
      file.keys.every((k) => k.d === undefined),
      'never a private key in the published set',
    );
    // Once every token kidA signed has expired (+ slack), kidA leaves the set.
    clock += 60_000;
    await m.rotate();
    assert.ok(!m.jwks().keys.some((k) => k.kid === kidA));
    assert.ok(m.jwks().keys.some((k) => k.kid === kidB));
    m.close();
  });

  it('a remote service verifies against the published /.well-known/jwks.json', async () => {
    const server: Server = createServer((req, res) => {
      if (req.url === '/.well-known/jwks.json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(minter.jwks()));
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
      const v = createCredentialVerifier({ audience: minter.audienceFor('http'), issuer: minter.issuer, jwksUrl: url });
      const token = await minter.mint({ service: 'http', principal: alice, tool: 'fetch', purpose: null, decisionId: 'd' });
      assert.equal((await v.verify(token, { tool: 'fetch' })).sub, 'alice');
      await minter.rotate();
      const after = await minter.mint({ service: 'http', principal: alice, tool: 'fetch', purpose: null, decisionId: 'd' });
      assert.equal((await v.verify(after, { tool: 'fetch' })).sub, 'alice');
      await refused(
        v,
        await minter.mint({ service: 'fs', principal: alice, tool: 'fetch', purpose: null, decisionId: 'd' }),
        'fetch',
        'ERR_CREDENTIAL_AUDIENCE',
      );
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  // ttl_s itself is bounded by the schema (schema.test.ts); this relation between two fields is not.
  it('refuses a rotation period shorter than twice the ttl at construction', async () => {
    await assert.rejects(createServiceCredentialMinter({ ttl_s: 30, rotate_every_s: 59, autoRotate: false }), (e: unknown) => {
      assert.ok(e instanceof GatewayError, String(e));
      assert.equal(e.code, 'ERR_CONFIG_INVALID');
      assert.equal(e.data?.key, 'auth.service_credentials.rotate_every_s');
      assert.equal(e.message, 'rotate_every_s must be at least twice ttl_s');
      return true;
    });
    const m = await createServiceCredentialMinter({ ttl_s: 30, rotate_every_s: 60, autoRotate: false });
    m.close();
  });
});
