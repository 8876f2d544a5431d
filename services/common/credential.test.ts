// Stand-alone like the module: tokens are made here with jose, as a (possibly hostile) gateway would.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWTPayload } from 'jose';
import {
  CREDENTIAL_META_KEY,
  DEFAULT_SERVICE_ISSUER,
  SERVICE_CREDENTIAL_ALG,
  SERVICE_CREDENTIAL_TYP,
  serviceAudience,
  toolScope,
} from '../../schemas/contracts/service-credential.js';
import type { ServiceCredentialClaims } from '../../schemas/contracts/service-credential.js';
import { CredentialError, createCredentialVerifier, credentialFromAuthorization, credentialFromMeta, guardWith } from './credential.js';
import type { CredentialVerifier } from './credential.js';

const AUD = serviceAudience('fs');
const ISS = DEFAULT_SERVICE_ISSUER;
const now = (): number => Math.floor(Date.now() / 1000);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('services/common/credential', () => {
  let dir: string;
  let key: CryptoKey;
  let verifier: CredentialVerifier;
  // What the gateway mints, then overridden the way a hostile or broken gateway would.
  const claims = (over: JWTPayload = {}): JWTPayload => {
    const minted: ServiceCredentialClaims = {
      iss: ISS,
      aud: AUD,
      sub: 'alice',
      iat: now(),
      nbf: now(),
      exp: now() + 30,
      jti: `j-${Math.random()}`,
      scope: toolScope('read'),
      decision_id: 'dec-1',
      purpose: null,
    };
    return { ...minted, ...over };
  };
  const sign = (c: JWTPayload, typ = SERVICE_CREDENTIAL_TYP): Promise<string> =>
    new SignJWT(c).setProtectedHeader({ alg: SERVICE_CREDENTIAL_ALG, kid: 'g1', typ }).sign(key);
  const refused = async (v: CredentialVerifier, token: string | undefined, code: string, tool = 'read'): Promise<void> => {
    await assert.rejects(v.verify(token, { tool }), (e: unknown) => e instanceof CredentialError && e.code === code);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-svc-cred-'));
    const kp = await generateKeyPair(SERVICE_CREDENTIAL_ALG, { extractable: true });
    key = kp.privateKey;
    await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'g1', alg: SERVICE_CREDENTIAL_ALG }] }));
    verifier = createCredentialVerifier({ audience: AUD, issuer: ISS, jwksFile: join(dir, 'jwks.json') });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('accepts a well-formed gateway credential', async () => {
    const c = await verifier.verify(await sign(claims({ purpose: 'p-1' })), { tool: 'read' });
    assert.deepEqual([c.sub, c.scope, c.purpose, c.decision_id], ['alice', toolScope('read'), 'p-1', 'dec-1']);
  });

  it('refuses forgeries and misuse', async () => {
    await refused(verifier, undefined, 'ERR_CREDENTIAL_MISSING');
    await refused(verifier, await sign(claims({ aud: serviceAudience('http') })), 'ERR_CREDENTIAL_AUDIENCE');
    await refused(verifier, await sign(claims({ iss: 'https://idp.example' })), 'ERR_CREDENTIAL_ISSUER');
    await refused(verifier, await sign(claims({ iat: now() - 200, nbf: now() - 200, exp: now() - 100 })), 'ERR_CREDENTIAL_EXPIRED');
    await refused(verifier, await sign(claims({ exp: now() + 3600 })), 'ERR_CREDENTIAL_INVALID'); // lives too long
    await refused(verifier, await sign(claims(), 'JWT'), 'ERR_CREDENTIAL_INVALID'); // not a service credential
    await refused(verifier, await sign(claims({ scope: toolScope('list') })), 'ERR_CREDENTIAL_SCOPE');
    await refused(verifier, await sign(claims({ scope: toolScope('read-all') })), 'ERR_CREDENTIAL_SCOPE');
    const noDecision = claims();
    delete noDecision.decision_id;
    await refused(verifier, await sign(noDecision), 'ERR_CREDENTIAL_INVALID');
    await refused(verifier, await sign(claims({ scope: [toolScope('read')] })), 'ERR_CREDENTIAL_INVALID'); // claim of the wrong type
    await refused(verifier, `${b64({ alg: 'none', typ: SERVICE_CREDENTIAL_TYP })}.${b64(claims())}.`, 'ERR_CREDENTIAL_INVALID');
    const hsInput = `${b64({ alg: 'HS256', kid: 'g1', typ: SERVICE_CREDENTIAL_TYP })}.${b64(claims())}`;
    await refused(verifier, `${hsInput}.${createHmac('sha256', 'k').update(hsInput).digest('base64url')}`, 'ERR_CREDENTIAL_INVALID');
    await refused(verifier, 'garbage', 'ERR_CREDENTIAL_INVALID');
  });

  it('can refuse replays', async () => {
    const v = createCredentialVerifier({ audience: AUD, issuer: ISS, jwksFile: join(dir, 'jwks.json'), rejectReplay: true });
    const t = await sign(claims());
    await v.verify(t, { tool: 'read' });
    await refused(v, t, 'ERR_CREDENTIAL_REPLAYED');
  });

  it('finds the credential in _meta (stdio) or the Authorization header (remote)', async () => {
    const t = await sign(claims());
    assert.equal(credentialFromMeta({ [CREDENTIAL_META_KEY]: t }), t);
    assert.equal(credentialFromMeta({ other: t }), undefined);
    assert.equal(credentialFromAuthorization(`Bearer ${t}`), t);
    assert.equal(credentialFromAuthorization('Basic abc'), undefined);
    const guard = guardWith(verifier);
    assert.equal((await guard({ mcpReq: { _meta: { [CREDENTIAL_META_KEY]: t } } }, 'read')).sub, 'alice');
    assert.equal((await guard({ mcpReq: {}, http: { authInfo: { token: t } } }, 'read')).reach, null);
    await assert.rejects(guard({ mcpReq: {} }, 'read'), CredentialError);
    await assert.rejects(guard({ mcpReq: { _meta: { [CREDENTIAL_META_KEY]: t } } }, 'write'), CredentialError);
  });

  it('reads the reach the decision narrowed the call to, and refuses a malformed one', async () => {
    const reach = { hosts: ['Status.Example.com'], ports: [443], roots: ['/eng'] };
    const ok = await verifier.verify(await sign(claims({ reach })), { tool: 'read' });
    assert.deepEqual(ok.reach, { hosts: ['status.example.com'], ports: [443], roots: ['/eng'] });
    for (const bad of [[], 'x', { hosts: 'a' }, { ports: [0] }, { roots: ['eng'] }, { paths: ['/'] }]) {
      await refused(verifier, await sign(claims({ reach: bad })), 'ERR_CREDENTIAL_INVALID');
    }
  });

  it('requires exactly one key source', () => {
    assert.throws(() => createCredentialVerifier({ audience: AUD, issuer: ISS }));
    assert.throws(() => createCredentialVerifier({ audience: AUD, issuer: ISS, jwksUrl: 'http://example.com/jwks' }));
  });
});
