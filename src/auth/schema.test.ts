import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';
import { MAX_CREDENTIAL_LIFETIME_S, SERVICE_CREDENTIAL_ALG, SERVICE_CREDENTIAL_ALGS } from '../../schemas/contracts/service-credential.js';
import { ASYMMETRIC_ALGORITHMS, AUTH_DEFAULTS } from './config.js';

// dist/src/auth -> repo root, or src/auth under tsx.
const schemaUrl = new URL(
  import.meta.url.includes('/dist/') ? '../../../schemas/config-auth.schema.json' : '../../schemas/config-auth.schema.json',
  import.meta.url,
);
const schema = JSON.parse(readFileSync(fileURLToPath(schemaUrl), 'utf8')) as Record<string, unknown>;
const ajv = new Ajv2020({ allErrors: true, useDefaults: true, strict: true, strictRequired: false });
// ajv-formats is CommonJS: under NodeNext the default import is module.exports, whose `default` is the plugin.
addFormatsModule.default(ajv);
const validate = ajv.compile(schema);

const ok = (yaml: string): Record<string, unknown> => {
  const doc = parse(yaml) as Record<string, unknown>;
  assert.ok(validate(doc), JSON.stringify(validate.errors));
  return doc;
};
/** Every error the schema reports for `yaml`, as "<key path>: <message>". */
const errorsOf = (yaml: string): string[] => {
  assert.equal(validate(parse(yaml)), false, yaml);
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'}: ${e.message ?? ''}`);
};
const JWT = 'mode: jwt\nissuer: https://idp.example\njwks_url: https://idp.example/jwks\n';

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
service_credentials: { ttl_s: 30, rotate_every_s: 3600, alg: ES256, jwks_file: .tmp/gateway-jwks.json }
mtls: { cert_file: certs/gw.pem, key_file: certs/gw.key, ca_file: certs/ca.pem }
state_binding: { key_file: /run/secrets/state.key }
`);
  });

  it('publishes the algorithms and the credential lifetime the code and the service contract use', () => {
    const props = schema.properties as Record<string, Record<string, any>>;
    assert.deepEqual(props.algorithms!.items.enum, [...ASYMMETRIC_ALGORITHMS]);
    assert.equal(props.service_credentials!.properties.ttl_s.maximum, MAX_CREDENTIAL_LIFETIME_S);
    assert.deepEqual(props.service_credentials!.properties.alg.enum, [...SERVICE_CREDENTIAL_ALGS]);
    assert.equal(props.service_credentials!.properties.alg.default, SERVICE_CREDENTIAL_ALG);
  });

  // The authenticator and the minter trust the schema for these and no longer check them again.
  describe('is the one check of ranges, enums and key sources', () => {
    const cases: Array<[string, string, string[]]> = [
      ['mode outside dev | jwt', 'mode: oauth\n', ['/mode: must be equal to one of the allowed values']],
      ['an unknown key (no shared secrets)', 'mode: dev\nshared_secret: hunter2\n', ['/: must NOT have additional properties']],
      ['HS256 (a symmetric algorithm)', `${JWT}algorithms: [HS256]\n`, ['/algorithms/0: must be equal to one of the allowed values']],
      ['alg none', `${JWT}algorithms: [none]\n`, ['/algorithms/0: must be equal to one of the allowed values']],
      ['an empty algorithm list', `${JWT}algorithms: []\n`, ['/algorithms: must NOT have fewer than 1 items']],
      ['clock_tolerance_s over 300', 'mode: dev\nclock_tolerance_s: 301\n', ['/clock_tolerance_s: must be <= 300']],
      ['a negative clock_tolerance_s', 'mode: dev\nclock_tolerance_s: -1\n', ['/clock_tolerance_s: must be >= 0']],
      ['max_token_bytes under 256', 'mode: dev\nmax_token_bytes: 255\n', ['/max_token_bytes: must be >= 256']],
      ['max_token_bytes over 65536', 'mode: dev\nmax_token_bytes: 65537\n', ['/max_token_bytes: must be <= 65536']],
      ['a service credential ttl_s over 60', 'mode: dev\nservice_credentials: { ttl_s: 61 }\n', ['/service_credentials/ttl_s: must be <= 60']],
      ['a service credential ttl_s of 0', 'mode: dev\nservice_credentials: { ttl_s: 0 }\n', ['/service_credentials/ttl_s: must be >= 1']],
      ['a fractional ttl_s', 'mode: dev\nservice_credentials: { ttl_s: 1.5 }\n', ['/service_credentials/ttl_s: must be integer']],
      [
        'a symmetric service credential alg',
        'mode: dev\nservice_credentials: { alg: HS256 }\n',
        ['/service_credentials/alg: must be equal to one of the allowed values'],
      ],
      ['a relative jwks_url', 'mode: jwt\nissuer: x\njwks_url: idp/jwks\n', ['/jwks_url: must match format "uri"']],
      [
        'jwt mode without an issuer',
        'mode: jwt\njwks_url: https://idp.example/jwks\n',
        ["/: must have required property 'issuer'", '/: must match "then" schema'],
      ],
      ['an empty issuer', 'mode: jwt\nissuer: ""\njwks_url: https://idp.example/jwks\n', ['/issuer: must NOT have fewer than 1 characters']],
      [
        'jwt mode without a key source',
        'mode: jwt\nissuer: x\n',
        [
          "/: must have required property 'jwks_url'",
          "/: must have required property 'jwks_file'",
          '/: must match exactly one schema in oneOf',
          '/: must match "then" schema',
        ],
      ],
      ['both jwks_url and jwks_file', `${JWT}jwks_file: /k.json\n`, ['/: must match exactly one schema in oneOf', '/: must match "then" schema']],
      ['dev mode with a jwks_url', 'mode: dev\njwks_url: https://idp.example/jwks\n', ['/: must NOT be valid', '/: must match "then" schema']],
      ['dev mode with a jwks_file', 'mode: dev\njwks_file: /k.json\n', ['/: must NOT be valid', '/: must match "then" schema']],
    ];
    for (const [name, yaml, expected] of cases) {
      it(`refuses ${name}`, () => assert.deepEqual(errorsOf(yaml), expected));
    }
  });
});
