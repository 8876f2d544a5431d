import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { isGatewayError } from '../errors.js';
import { DEV_CONFIG_PATH, loadConfig, PACKAGE_ROOT, parseConfig } from './load.js';

const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const minimal = `
auth: { mode: dev }
services:
  echo: { transport: stdio, command: node, args: [x.js] }
`;

function refused(text: string, pattern: RegExp, env: NodeJS.ProcessEnv = {}) {
  assert.throws(
    () => parseConfig(text, 'bad.yaml', { env }),
    (e: unknown) => isGatewayError(e) && e.code === 'ERR_CONFIG_INVALID' && pattern.test(e.message),
  );
}

describe('config', () => {
  test('every example config in the repository validates against the schema', () => {
    const examples = readdirSync(path.join(PACKAGE_ROOT, 'src', 'config', 'examples')).filter((f) => f.endsWith('.yaml'));
    assert.ok(examples.length > 0);
    // What replica.yaml asks its operator to set (each variable it names; an unset one is an error).
    const replicaEnv = {
      REPLICA_ID: 'r1',
      PUBLIC_URL: 'https://mcp.example.com',
      OIDC_ISSUER: 'https://login.example.com/realms/acme',
      OIDC_JWKS_URL: 'https://login.example.com/realms/acme/certs',
      STATE_BINDING_KEY_FILE: '/etc/micro-mcp/state-binding.key',
      REDIS_URL: 'redis://127.0.0.1:6379/0',
      AUDIT_DIR: '/var/log/micro-mcp',
    };
    for (const f of examples) {
      const cfg = loadConfig(path.join(PACKAGE_ROOT, 'src', 'config', 'examples', f), { env: { ...process.env, ...replicaEnv } });
      assert.ok(Object.keys(cfg.services).length > 0, f);
    }
    const replica = loadConfig(path.join(PACKAGE_ROOT, 'src', 'config', 'examples', 'replica.yaml'), { env: replicaEnv });
    assert.equal(replica.server.replica_id, 'r1');
    assert.equal(replica.state?.redis, 'redis://127.0.0.1:6379/0');
    assert.equal(replica.audit.outcome_before_answer, true);
    assert.equal(replica.audit.file, '/var/log/micro-mcp/audit-r1.jsonl');
    const dev = loadConfig(DEV_CONFIG_PATH);
    assert.equal(dev.server.host, '127.0.0.1');
    assert.equal(dev.auth?.mode, 'dev');
    assert.ok(!JSON.stringify(dev).includes('${'), 'every variable was interpolated');
  });

  test('defaults are applied and the result is frozen', () => {
    const cfg = parseConfig(minimal, 'ok.yaml', { env: {} });
    assert.equal(cfg.server.port, 8080);
    assert.equal(cfg.server.max_body_bytes, 1048576);
    assert.equal(cfg.services.echo!.era, 'auto');
    assert.equal(cfg.services.echo!.call_timeout_ms, 60000);
    assert.equal(cfg.services.echo!.isolation, 'shared', 'one connection for every agent unless the config isolates');
    assert.equal(cfg.services.echo!.roots, 'never', "an agent's roots are never forwarded unless the config says so");
    assert.equal(parseConfig(minimal.replace('args: [x.js]', 'args: [x.js], roots: forward'), 'ok.yaml', { env: {} }).services.echo!.roots, 'forward');
    const iso = parseConfig(minimal.replace('args: [x.js]', 'args: [x.js], isolation: principal, pool: { max: 4 }'), 'ok.yaml', { env: {} });
    assert.deepEqual([iso.services.echo!.isolation, iso.services.echo!.pool.max, iso.services.echo!.pool.idle_s], ['principal', 4, 300]);
    assert.deepEqual(cfg.limits, { calls_per_minute: 600, burst: 100, concurrent_per_principal: 64, concurrent_total: 1024 });
    // An absent audit section is an empty one, so its defaults are there too.
    assert.equal(cfg.audit.fsync, 'always');
    assert.equal(cfg.audit.rotate_bytes, 67108864);
    assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.services.echo));
  });

  test('bad configs are refused with the key path and the reason', () => {
    refused(`${minimal}\nsurprise: 1\n`, /\/: unknown key "surprise"/);
    refused(minimal.replace('transport: stdio', 'transport: carrier-pigeon'), /\/services\/echo\/transport: must be one of/);
    refused(`${minimal}\nserver: { port: 99999 }\n`, /\/server\/port: must be <= 65535/);
    refused(minimal.replace('args: [x.js]', 'args: [x.js], isolation: per-call'), /\/services\/echo\/isolation: must be one of/);
    refused(minimal.replace('args: [x.js]', 'args: [x.js], roots: always'), /\/services\/echo\/roots: must be one of \["never","forward"\]/);
    refused(minimal.replace('args: [x.js]', 'args: [x.js], roots: true'), /\/services\/echo\/roots: must be one of \["never","forward"\]/);
    refused(minimal.replace('args: [x.js]', 'args: [x.js], pool: { max: 0 }'), /\/services\/echo\/pool\/max: must be >= 1/);
    refused(`${minimal}\nserver: { max_body_bytes: "big" }\n`, /\/server\/max_body_bytes: must be integer/);
    refused('auth: { mode: dev }\nservices: {}\n', /\/services: must NOT have fewer than 1 properties/);
    refused('auth: { mode: dev }\nservices:\n  Bad_Name: { transport: stdio, command: x }\n', /property name must be valid|must match pattern/);
    refused('services:\n  echo: { transport: http }\n', /url|required/);
    // The transport picks the branch: an http service is not accepted as stdio because it has a command.
    refused(
      'services:\n  echo: { transport: http, command: node }\n',
      /^bad\.yaml: \/services\/echo: must have required property 'url'; \/services\/echo: unknown key "command"$/,
    );
    refused(
      `${minimal}\n  other: { transport: stdio, command: "\${NOT_SET_ANYWHERE}" }\n`,
      /\/services\/other\/command: environment variable NOT_SET_ANYWHERE is not set/,
    );
    refused('services: [\n', /bad\.yaml:\d+:\d+: YAML error/);
    refused('', /^bad\.yaml: \/: must be object$/);
    refused('- services\n', /^bad\.yaml: \/: must be object$/);
    refused('services:\n  a: 1\n  a: 2\n', /YAML error/);
  });

  test('the ranges of the policy, audit and limits sections are refused at load, with the key path', () => {
    // The modules trust these: no module checks them again.
    const cases: Array<[string, string]> = [
      ['policy: { engines: [] }', '/policy/engines: must NOT have fewer than 1 items'],
      ['policy: { engines: [opa] }', '/policy/engines/0: must be one of ["rego","cedar"]'],
      ['policy: { engines: [rego, rego] }', '/policy/engines: must NOT have duplicate items (items ## 0 and 1 are identical)'],
      ['policy: { services: { fs: [] } }', '/policy/services/fs: must NOT have fewer than 1 items'],
      ['policy: { services: { fs: [opa] } }', '/policy/services/fs/0: must be one of ["rego","cedar"]'],
      ['policy: { decision_timeout_ms: 0 }', '/policy/decision_timeout_ms: must be > 0'],
      ['policy: { decision_timeout_ms: .inf }', '/policy/decision_timeout_ms: must be number'],
      ['policy: { rego: { bundle: "" } }', '/policy/rego/bundle: must NOT have fewer than 1 characters'],
      ['audit: { fsync: sometimes }', '/audit/fsync: must be one of ["always","batch","never"]'],
      ['audit: { fsync_interval_ms: 0 }', '/audit/fsync_interval_ms: must be >= 1'],
      ['audit: { fsync_interval_ms: 2147483648 }', '/audit/fsync_interval_ms: must be <= 2147483647'],
      ['audit: { rotate_bytes: 1.5 }', '/audit/rotate_bytes: must be integer'],
      ['audit: { rotate_bytes: -1 }', '/audit/rotate_bytes: must be >= 0'],
      ['audit: { keep_files: -1 }', '/audit/keep_files: must be >= 0'],
      ['audit: { keep_files: 1e20 }', '/audit/keep_files: must be <= 9007199254740991'],
      ['audit: { file: null }', "/audit: must have required property 'stdout'"],
      ['audit: { file: null, stdout: false }', '/audit/stdout: must be true'],
      ['limits: { burst: 0 }', '/limits/burst: must be >= 1'],
    ];
    for (const [section, reason] of cases) {
      assert.throws(
        () => parseConfig(`${minimal}${section}\n`, 'bad.yaml', { env: {} }),
        (e: unknown) => isGatewayError(e) && e.code === 'ERR_CONFIG_INVALID' && e.message === `bad.yaml: ${reason}`,
        section,
      );
    }
    assert.equal(parseConfig(`${minimal}audit: { file: null, stdout: true }\n`, 'ok.yaml', { env: {} }).audit.file, null);
  });

  test('a secret from the environment is interpolated but never echoed in errors', () => {
    const text = `${minimal}    env: { API_KEY: "\${SECRET_KEY}" }\nserver: { port: "not a port" }\n`;
    try {
      parseConfig(text, 'bad.yaml', { env: { SECRET_KEY: 'sk-live-do-not-print' } });
      assert.fail('must throw');
    } catch (e) {
      assert.ok(isGatewayError(e));
      assert.ok(!e.message.includes('sk-live-do-not-print'));
    }
  });

  test('a missing file is a clear error', () => {
    const file = path.join(dir, 'nope.yaml');
    assert.throws(() => loadConfig(file), /cannot read config file .*nope\.yaml: ENOENT/);
    writeFileSync(path.join(dir, 'ok.yaml'), minimal);
    assert.equal(loadConfig(path.join(dir, 'ok.yaml')).source, path.join(dir, 'ok.yaml'));
  });
});
