import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { policyBuild, policyCheck, policyExplain, policyTest } from './cli.js';
import { repoRoot } from './rego/opa.js';

const root = repoRoot() as string;

function capture(): { out: { write: (s: string) => boolean }; text: () => string } {
  let buf = '';
  return { out: { write: (s: string) => ((buf += s), true) }, text: () => buf };
}

describe('micro-mcp policy CLI functions', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'micro-mcp-policy-cli-'));
    await cp(join(root, 'policies'), dir, { recursive: true });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('policy test runs the Rego and Cedar suites and ends with "N passed, 0 failed"', async () => {
    const c = capture();
    const code = await policyTest({ regoDir: join(root, 'policies/rego'), cedarDir: join(root, 'policies/cedar') }, c.out);
    const lines = c.text().trimEnd().split('\n');
    assert.equal(code, 0, c.text());
    assert.match(lines.at(-1) ?? '', /^(\d+) passed, 0 failed$/);
    assert.ok(Number(/^(\d+)/.exec(lines.at(-1) ?? '')?.[1]) > 60);
    assert.ok(lines.some((l) => l.startsWith('ok   rego ')));
    assert.ok(lines.some((l) => l.startsWith('ok   cedar ')));
  });

  it('policy test fails (exit 1) when a Rego or Cedar case fails', async () => {
    const rego = join(dir, 'rego', 'fs.rego');
    const cedarTests = join(dir, 'cedar', 'tests', 'authz.json');
    const goodRego = await readFile(rego, 'utf8');
    const goodTests = await readFile(cedarTests, 'utf8');
    try {
      await writeFile(rego, goodRego.replace('"support": {"/public"}', '"support": {"/public", "/eng"}'));
      const cases = JSON.parse(goodTests) as { decision: string }[];
      cases[0]!.decision = 'deny';
      await writeFile(cedarTests, JSON.stringify(cases));
      const c = capture();
      const code = await policyTest({ regoDir: join(dir, 'rego'), cedarDir: join(dir, 'cedar') }, c.out);
      assert.equal(code, 1);
      assert.match(c.text(), /FAIL rego {2}data\.micro_mcp\.authz_test\.test_support_cannot_read_eng/);
      assert.match(c.text(), /FAIL cedar .*eng reads \/eng - expected deny, got allow/);
      assert.match(c.text().trimEnd().split('\n').at(-1) ?? '', /^\d+ passed, [1-9]\d* failed$/);
    } finally {
      await writeFile(rego, goodRego);
      await writeFile(cedarTests, goodTests);
    }
  });

  it('Cedar cases written as PolicyInputs go through the real request mapping; a fixture that breaks the schema fails with its reason', async () => {
    const extra = join(dir, 'cedar', 'tests', 'zz_inputs.json');
    const cases = JSON.parse(await readFile(join(root, 'policies', 'cedar', 'tests', 'authz.json'), 'utf8')) as Array<{ input: Record<string, unknown> }>;
    const base = cases[0]!.input;
    try {
      await writeFile(
        extra,
        JSON.stringify([
          { name: 'wrong ids', input: base, decision: 'allow', reason: ['fs_read_scope', 'http_fetch_scope'] },
          { name: 'not a PolicyInput', input: { ...base, action: 'fly' }, decision: 'allow', reason: ['fs_read_scope'] },
          { name: 'as the gateway builds it', input: base, decision: 'allow', reason: ['fs_read_scope'] },
        ]),
      );
      const c = capture();
      assert.equal(await policyTest({ regoDir: join(root, 'policies/rego'), cedarDir: join(dir, 'cedar') }, c.out), 1);
      assert.match(c.text(), /FAIL cedar .*zz_inputs\.json: wrong ids - expected reason fs_read_scope, http_fetch_scope, got fs_read_scope$/m);
      assert.match(
        c.text(),
        /FAIL cedar .*zz_inputs\.json: not a PolicyInput - input does not match schemas\/policy-input\.schema\.json: \/action must be equal to one of the allowed values$/m,
      );
      assert.match(c.text(), /^ok {3}cedar .*zz_inputs\.json: as the gateway builds it$/m);
    } finally {
      await rm(extra, { force: true });
    }
  });

  it('policy check passes on the examples and names file and line when broken', async () => {
    const ok = capture();
    assert.equal(await policyCheck({ regoDir: join(root, 'policies/rego'), cedarDir: join(root, 'policies/cedar') }, ok.out), 0, ok.text());
    assert.match(ok.text(), /policy check passed/);

    const rego = join(dir, 'rego', 'purpose.rego');
    const good = await readFile(rego, 'utf8');
    try {
      await writeFile(rego, `${good}\nunused_rule if {\n\tx := 1\n}\n`);
      const bad = capture();
      assert.equal(await policyCheck({ regoDir: join(dir, 'rego') }, bad.out), 1);
      assert.match(bad.text(), /error: rego: .*purpose\.rego:\d+: rego_compile_error/);
    } finally {
      await writeFile(rego, good);
    }
  });

  it('policy check, test and build refuse a Rego typo in a deny rule with file, line and reason (typed against the input schema)', async () => {
    const typo = join(dir, 'rego', 'zz_typo.rego');
    await writeFile(typo, 'package micro_mcp.authz\n\n_denies contains "typo_deny: x" if {\n\t"sales" in input.principal.grups\n}\n');
    try {
      const check = capture();
      assert.equal(await policyCheck({ regoDir: join(dir, 'rego') }, check.out), 1);
      assert.match(check.text(), /error: rego: .*zz_typo\.rego:4: rego_type_error: undefined ref: input\.principal\.grups/);
      const test = capture();
      assert.equal(await policyTest({ regoDir: join(dir, 'rego'), cedarDir: join(root, 'policies/cedar') }, test.out), 1);
      assert.match(test.text(), /FAIL rego: .*zz_typo\.rego:4: rego_type_error: undefined ref: input\.principal\.grups/);
      const build = capture();
      assert.equal(await policyBuild({ regoDir: join(dir, 'rego'), out: join(dir, 'out.tar.gz') }, build.out), 1);
      assert.match(build.text(), /zz_typo\.rego:4: rego_type_error/);
    } finally {
      await rm(typo, { force: true });
    }
  });

  it('policy explain prints each engine decision with reasons', async () => {
    const c = capture();
    const code = await policyExplain(
      {
        baseDir: root,
        principal: 'sam',
        groups: ['support'],
        scopes: ['fs:read'],
        tool: 'fs.read',
        annotations: { readOnlyHint: true, openWorldHint: false },
        arguments: { path: '/eng/design.md' },
        resources: { fs: { kind: 'path', arg: 'path' } },
      },
      c.out,
    );
    assert.equal(code, 0);
    const t = c.text();
    assert.match(t, /^rego: deny\n {4}- fs_path_not_permitted: /m);
    assert.match(t, /^cedar: deny\n {4}- fs_path_not_permitted: /m);
    assert.match(t, /^decision: deny \(engines: rego, cedar; revision sha256:[0-9a-f]{64}\)$/m);

    const allowed = capture();
    await policyExplain(
      {
        baseDir: root,
        principal: 'alice',
        groups: ['eng'],
        scopes: ['http:fetch'],
        purpose: 'incident-4711',
        tool: 'http.fetchText',
        arguments: { url: 'https://status.example.com/' },
        resources: { http: { kind: 'url', arg: 'url' } },
      },
      allowed.out,
    );
    assert.match(allowed.text(), /^decision: allow/m);
  });
});
