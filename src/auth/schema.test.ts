import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';
import { ASYMMETRIC_ALGORITHMS, AUTH_DEFAULTS } from './config.js';

// dist/src/auth -> repo root, or src/auth under tsx.
const schemaUrl = new URL(
  import.meta.url.includes('/dist/') ? '../../../schemas/config-auth.schema.json' : '../../schemas/config-auth.schema.json',
  import.meta.url,
);
const schema = JSON.parse(readFileSync(fileURLToPath(schemaUrl), 'utf8')) as Record<string, unknown>;
const ajv = new Ajv2020({ allErrors: true, useDefaults: true, strict: true, strictRequired: false });
(addFormatsModule as unknown as (a: Ajv2020) => void)(ajv);
const validate = ajv.compile(schema);

const ok = (yaml: string): Record<string, unknown> => {
  const doc = parse(yaml) as Record<string, unknown>;
  assert.ok(validate(doc), JSON.stringify(validate.errors));
  return doc;
};
const bad = (yaml: string): void => {
  assert.equal(validate(parse(yaml)), false, yaml);
};

describe('schemas/config-auth.schema.json', () => {
  it('has the published $id', () => {
    assert.equal(schema.$id, 'https://micro-mcp.dev/schemas/config-auth.schema.json');
  });

  it('accepts the dev and real-issuer examples and fills defaults', () => {
    const dev = ok('mode: dev\n');
    assert.deepEqual(dev.algorithms, [...ASYMMETRIC_ALGORITHMS]);
    assert.equal(dev.clock_tolerance_s, AUTH_DEFAULTS.clock_tolerance_s);
    assert.equal(dev.max_token_bytes, AUTH_DEFAULTS.max_token_bytes);
    ok(`
mode: jwt
issuer: https://login.example.com/realms/acme
jwks_url: https://login.example.com/realms/acme/protocol/openid-connect/certs
algorithms: [RS256, ES256]
clock_tolerance_s: 10
required_claims: [client_id]
claims: { groups: realm_access.roles, scopes: [scope, scp], client: azp, actor: act, purpose: purpose }
scopes_supported: ["fs:read", "http:fetch"]
service_credentials: { ttl_s: 30, rotate_every_s: 3600, jwks_file: .tmp/gateway-jwks.json }
mtls: { cert_file: certs/gw.pem, key_file: certs/gw.key, ca_file: certs/ca.pem }
state_binding: { key_file: /run/secrets/state.key }
`);
  });

  it('refuses none, HS*, long service credentials and ambiguous key sources', () => {
    bad('mode: jwt\nissuer: x\njwks_url: https://a/jwks\nalgorithms: [none]\n');
    bad('mode: jwt\nissuer: x\njwks_url: https://a/jwks\nalgorithms: [HS256]\n');
    bad('mode: dev\nservice_credentials: { ttl_s: 61 }\n');
    bad('mode: jwt\nissuer: x\njwks_url: https://a/jwks\njwks_file: /k.json\n');
    bad('mode: jwt\njwks_url: https://a/jwks\n');
    bad('mode: jwt\nissuer: x\n');
    bad('mode: dev\njwks_file: /k.json\n');
    bad('mode: dev\nshared_secret: hunter2\n');
    bad('mode: dev\nclock_tolerance_s: 3600\n');
  });
});
