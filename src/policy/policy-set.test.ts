import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { isGatewayError, type GatewayError } from '../errors.js';
import { policyBuild } from './cli.js';
import { loadPolicies, type PolicySet } from './policy-set.js';
import { repoRoot } from './rego/opa.js';
import { caseInput, POLICY_CASES } from './testing/cases.js';

const root = repoRoot() as string;
const ajv = new Ajv2020({ allErrors: true, strict: false });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
const schema = async (name: string): Promise<object> => JSON.parse(await readFile(join(root, 'schemas', name), 'utf8')) as object;

/** A private copy of the example policies to edit. */
async function copyPolicies(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'micro-mcp-policy-'));
  await cp(join(root, 'policies'), dir, { recursive: true });
  return dir;
}

const sink = { write: () => true };
const byName = (n: string) => {
  const c = POLICY_CASES.find((x) => x.name === n);
  assert.ok(c, n);
  return c;
};

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function rejectsCompile(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isGatewayError(e), String(e));
    return e;
  }
  assert.fail('expected ERR_POLICY_COMPILE');
}

describe('PolicySet with both engines (the default)', () => {
  let set: PolicySet;
  before(async () => {
    // A generous timeout: these cases test decisions, not the wall clock of a loaded test machine.
    set = await loadPolicies({ watch: false, decision_timeout_ms: 5000 }, { baseDir: root });
  });
  after(() => set.close());

  it('decides every shared case as the table says, with valid inputs and decisions', async () => {
    const validInput = ajv.compile(await schema('policy-input.schema.json'));
    const validDecision = ajv.compile(await schema('decision.schema.json'));
    for (const c of POLICY_CASES) {
      const input = caseInput(c);
      assert.ok(validInput(input), `${c.name}: ${JSON.stringify(validInput.errors)}`);
      const d = set.decide(input);
      assert.ok(validDecision(d), `${c.name}: ${JSON.stringify(validDecision.errors)}`);
      assert.equal(d.allow, c.expect.allow, c.name);
      assert.equal(d.policy_revision, set.revision);
      // Both engines' own verdicts, allow and deny, are part of the decision.
      assert.deepEqual(
        d.engines?.map(
          (v) =>
            `${v.engine}:${v.allow}:${v.reasons
              .map((r) => r.id)
              .sort()
              .join()}`,
        ),
        ['rego', 'cedar'].map((e) => `${e}:${c.expect.allow}:${[...c.expect.ids].sort().join()}`),
        c.name,
      );
      // Each engine cites the same ids, so the combined reasons hold every id once per engine.
      for (const engine of ['rego', 'cedar'] as const) {
        assert.deepEqual(
          d.reasons
            .filter((r) => r.engine === engine)
            .map((r) => r.id)
            .sort(),
          [...c.expect.ids].sort(),
          `${c.name} (${engine})`,
        );
      }
    }
  });

  it('refuses a method outside the method table before any engine evaluates it', () => {
    const input = { ...caseInput(byName('eng reads /eng')), method: 'ping' };
    const d = set.decide(input);
    assert.equal(d.allow, false);
    assert.deepEqual(d.reasons, [{ engine: 'gateway', id: 'unknown_method', message: 'this MCP method is not decided by the gateway policy' }]);
    // An action that does not belong to the method is refused the same way.
    assert.deepEqual(
      set.decide({ ...caseInput(byName('eng reads /eng')), action: 'list_tools' }).reasons.map((r) => r.id),
      ['unknown_method'],
    );
  });

  it('lets the caller pick engines for one decision', () => {
    const input = caseInput(byName('support reads /eng'));
    assert.deepEqual(
      set.decide(input, ['cedar']).reasons.map((r) => `${r.engine}:${r.id}`),
      ['cedar:fs_path_not_permitted'],
    );
    assert.deepEqual(
      set.decide(input, ['rego']).reasons.map((r) => `${r.engine}:${r.id}`),
      ['rego:fs_path_not_permitted'],
    );
    assert.equal(set.decide(caseInput(byName('eng reads /eng')), []).allow, false, 'no engine means deny');
  });
});

describe('PolicySet configuration', () => {
  it('uses per-service engine lists', async () => {
    const set = await loadPolicies({ watch: false, services: { everything: ['cedar'] } }, { baseDir: root });
    try {
      assert.deepEqual(set.enginesFor('everything'), ['cedar']);
      assert.deepEqual(set.enginesFor('fs'), ['rego', 'cedar']);
      const d = set.decide(caseInput(byName('third-party tool with scope and purpose')));
      assert.deepEqual(
        d.reasons.map((r) => r.engine),
        ['cedar'],
      );
    } finally {
      set.close();
    }
  });

  it('refuses a per-service engine that policy.engines does not load, with the key path', async () => {
    // The section's ranges are the schema's (src/config/load.test.ts); this rule relates two keys.
    const e = await rejectsCompile(loadPolicies({ engines: ['rego'], services: { fs: ['cedar'] } }, { baseDir: root }));
    assert.equal(e.code, 'ERR_CONFIG_INVALID');
    assert.equal(e.message, 'policy.services.fs names cedar, which policy.engines does not load');
    assert.equal(e.data?.key, 'policy.services.fs');
  });

  it('validates the example config section against the published schema', async () => {
    const valid = ajv.compile(await schema('config-policy.schema.json'));
    assert.ok(
      valid({
        engines: ['rego', 'cedar'],
        rego: { dir: 'policies/rego' },
        cedar: { dir: 'policies/cedar' },
        services: { everything: ['rego'] },
        decision_timeout_ms: 50,
        watch: true,
      }),
    );
    assert.ok(!valid({ engines: ['opa'] }));
  });

  it('denies when an engine exceeds the decision timeout', async () => {
    const set = await loadPolicies({ watch: false, decision_timeout_ms: 0.000001 }, { baseDir: root });
    try {
      const d = set.decide(caseInput(byName('eng reads /eng')));
      assert.equal(d.allow, false);
      assert.ok(d.reasons.every((r) => r.id === 'engine_error' && /timeout/.test(r.message)));
      assert.deepEqual(
        d.engines?.map((v) => `${v.engine}:${v.error}`),
        ['rego:ERR_ENGINE_TIMEOUT', 'cedar:ERR_ENGINE_TIMEOUT'],
      );
    } finally {
      set.close();
    }
  });
});

describe('loading failures', () => {
  let dir: string;
  before(async () => {
    dir = await copyPolicies();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('refuses a broken Rego set at start-up with file, line and reason', async () => {
    const bad = join(dir, 'rego-bad');
    await cp(join(dir, 'rego'), bad, { recursive: true });
    const src = await readFile(join(bad, 'http.rego'), 'utf8');
    await writeFile(join(bad, 'http.rego'), src.replace('_fetch_tool if {', '_fetch_tool if {\n\tundefined_function(1)'));
    const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['rego'], rego: { dir: bad } }));
    assert.equal(e.code, 'ERR_POLICY_COMPILE');
    assert.match(e.message, /http\.rego:\d+: rego_type_error: undefined function undefined_function/);
  });

  it('refuses a Cedar set that fails strict validation, with file and line', async () => {
    const bad = join(dir, 'cedar-bad');
    await cp(join(dir, 'cedar'), bad, { recursive: true });
    const src = await readFile(join(bad, 'policies.cedar'), 'utf8');
    await writeFile(join(bad, 'policies.cedar'), src.replace('context.scopes.contains("http:fetch") };', 'context.scopes.contains(42) };'));
    const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['cedar'], cedar: { dir: bad } }));
    assert.equal(e.code, 'ERR_POLICY_COMPILE');
    const lineNo = src.slice(0, src.indexOf('context.scopes.contains("http:fetch") };')).split('\n').length;
    assert.match(e.message, new RegExp(`policies\\.cedar:${lineNo}: `));
    // The error cites the policy's @id, not the "policy17" Cedar makes up.
    assert.match(e.message, /: in policy @id\("http_fetch_scope"\): the types Long and String are not compatible/);
    assert.doesNotMatch(e.message, /`policy\d+`/);
  });

  it('refuses a Cedar policy without @id', async () => {
    const bad = join(dir, 'cedar-noid');
    await cp(join(dir, 'cedar'), bad, { recursive: true });
    await writeFile(join(bad, 'extra.cedar'), '\npermit (principal, action, resource);\n');
    const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['cedar'], cedar: { dir: bad } }));
    assert.match(e.message, /extra\.cedar:2: policy has no @id/);
  });

  it('denies (engine_error) when the Rego allow is undefined', async () => {
    const undef = join(dir, 'rego-undef');
    await cp(join(dir, 'rego'), undef, { recursive: true });
    await writeFile(join(undef, 'authz.rego'), 'package micro_mcp.authz\n\nallow if input.principal.id == "nobody"\n');
    for (const f of [
      'fs.rego',
      'http.rego',
      'purpose.rego',
      'vector.rego',
      'github.rego',
      'authz_test.rego',
      'fs_test.rego',
      'http_test.rego',
      'purpose_test.rego',
      'vector_test.rego',
      'github_test.rego',
    ])
      await rm(join(undef, f));
    const set = await loadPolicies({ watch: false, engines: ['rego'], rego: { dir: undef } });
    try {
      const d = set.decide(caseInput(byName('eng reads /eng')));
      assert.equal(d.allow, false);
      assert.equal(d.reasons[0]?.id, 'engine_error');
      assert.equal(d.engines?.[0]?.error, 'ERR_ENGINE_UNDEFINED');
    } finally {
      set.close();
    }
  });

  it('denies (engine_error) when a Cedar policy errors at evaluation, even though Rego allows', async () => {
    const boom = join(dir, 'cedar-boom');
    await cp(join(dir, 'cedar'), boom, { recursive: true });
    // Valid under strict validation, an overflow at evaluation: Cedar would skip the forbid, we deny.
    await writeFile(
      join(boom, 'boom.cedar'),
      '@id("boom")\nforbid (principal, action, resource) when { context.resource has port && context.resource.port * 9223372036854775807 > 0 };\n',
    );
    const set = await loadPolicies({ watch: false, cedar: { dir: boom } }, { baseDir: root });
    try {
      const d = set.decide(caseInput(byName('fetch status page for incident')));
      assert.equal(d.allow, false);
      assert.deepEqual(
        d.reasons.map((r) => `${r.engine}:${r.id}`),
        ['cedar:engine_error'],
      );
      // Both engines on the record: Rego's grant, and Cedar's failure with its cause.
      assert.deepEqual(
        d.engines?.map((v) => `${v.engine}:${v.allow}:${v.reasons.map((r) => r.id).join()}:${v.error ?? ''}`),
        ['rego:true:http_fetch_scope:', 'cedar:false:engine_error:ERR_ENGINE_EVALUATION'],
      );
    } finally {
      set.close();
    }
  });

  it('type-checks Rego against the PolicyInput schema: a typo or a type error in a deny rule refuses the set', async () => {
    // Each rule would otherwise never fire: the deny would silently not apply.
    const mistakes = [
      [
        '_denies contains "typo_deny: x" if {\n\t"sales" in input.principal.grups\n}\n',
        /zz_typo\.rego:4: rego_type_error: undefined ref: input\.principal\.grups/,
      ],
      [
        '_denies contains "type_deny: x" if {\n\tcount(input.principal.groups - {"x"}) > 0\n}\n',
        /zz_typo\.rego:4: rego_type_error: minus: invalid argument\(s\)/,
      ],
      ['_denies contains "field_deny: x" if {\n\tinput.resource.path.x == 1\n}\n', /zz_typo\.rego:4: rego_type_error: /],
    ] as const;
    for (const [rule, want] of mistakes) {
      const bad = join(dir, 'rego-typed');
      await rm(bad, { recursive: true, force: true });
      await cp(join(dir, 'rego'), bad, { recursive: true });
      await writeFile(join(bad, 'zz_typo.rego'), `package micro_mcp.authz\n\n${rule}`);
      const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['rego'], rego: { dir: bad } }));
      assert.equal(e.code, 'ERR_POLICY_COMPILE');
      assert.match(e.message, want);
      const problems = e.data?.problems as Array<{ file: string; line: number }>;
      assert.equal(problems[0]?.line, 4);
      assert.match(problems[0]?.file ?? '', /zz_typo\.rego$/);
    }
  });

  it('types a rule on a named resource fact only where a service declares that fact', async () => {
    const named = join(dir, 'rego-named');
    await cp(join(dir, 'rego'), named, { recursive: true });
    await writeFile(join(named, 'zz_repo.rego'), 'package micro_mcp.authz\n\n_denies contains "repo_frozen: x" if {\n\tinput.resource.repo == "core"\n}\n');
    const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['rego'], rego: { dir: named } }));
    assert.match(e.message, /zz_repo\.rego:4: rego_type_error: undefined ref: input\.resource\.repo/);
    const set = await loadPolicies({ watch: false, engines: ['rego'], rego: { dir: named } }, { resourceFacts: ['repo'] });
    set.close();
  });

  it('needs the opa CLI for sources, and says so', async () => {
    const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['rego'], rego: { dir: join(dir, 'rego') }, opa_path: join(dir, 'no-opa') }));
    assert.equal(e.code, 'ERR_POLICY_COMPILE');
    assert.match(e.message, /opa CLI was not found/);
  });

  it('serves a prebuilt bundle without any opa CLI', async () => {
    const bundle = join(dir, 'out', 'bundle.tar.gz');
    assert.equal(await policyBuild({ regoDir: join(dir, 'rego'), out: bundle }, sink), 0);
    const set = await loadPolicies({ watch: false, engines: ['rego'], rego: { bundle }, opa_path: join(dir, 'no-opa') });
    try {
      assert.match(set.revision, /^sha256:[0-9a-f]{64}$/);
      for (const c of POLICY_CASES) assert.equal(set.decide(caseInput(c)).allow, c.expect.allow, c.name);
    } finally {
      set.close();
    }
    const e = await rejectsCompile(loadPolicies({ watch: false, engines: ['rego'], rego: { bundle: join(dir, 'rego', 'fs.rego') } }));
    assert.match(e.message, /not a gzipped tar bundle/);
  });
});

describe('obligations from either engine', () => {
  let dir: string;
  before(async () => {
    dir = await copyPolicies();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** The example set with one more Rego file and one more Cedar file. */
  async function withExtra(name: string, rego: string, cedar: string): Promise<PolicySet> {
    const r = join(dir, `rego-${name}`);
    const c = join(dir, `cedar-${name}`);
    await cp(join(dir, 'rego'), r, { recursive: true });
    await cp(join(dir, 'cedar'), c, { recursive: true });
    if (rego !== '') await writeFile(join(r, 'extra.rego'), `package micro_mcp.authz\n\n${rego}\n`);
    if (cedar !== '') await writeFile(join(c, 'extra.cedar'), cedar);
    return loadPolicies({ watch: false, decision_timeout_ms: 5000, rego: { dir: r }, cedar: { dir: c } }, { baseDir: root });
  }

  const fetch = () => caseInput(byName('fetch status page for incident'));

  it('merges both engines by fixed rules: consent if either asks, every category and label, the smallest max_bytes', async () => {
    const set = await withExtra(
      'merge',
      '_consent if _granted("http_fetch_scope")\n\n_max_bytes contains 4096 if _granted("http_fetch_scope")\n\n_labels contains "pii" if _granted("http_fetch_scope")',
      '@id("fetch_card_redaction")\n@redact("card")\n@max_bytes("65536")\n@labels("internal,pii")\npermit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText");\n',
    );
    try {
      const d = set.decide(fetch());
      assert.equal(d.allow, true);
      const { reach, ...rest } = d.obligations;
      assert.deepEqual([...((reach?.hosts as string[] | undefined) ?? [])].sort(), ['api.pagerduty.com', 'status.example.com']);
      assert.deepEqual(rest, {
        consent: true,
        redact: ['card', 'email', 'secrets'],
        max_bytes: 4096,
        labels: ['internal', 'pii'],
      });
    } finally {
      set.close();
    }
  });

  it('Cedar: @obligation("consent") on a deciding permit asks for consent; on a permit that did not decide it does not', async () => {
    const set = await withExtra(
      'cedar-consent',
      '',
      '@id("fetch_consent")\n@obligation("consent")\npermit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText") when { context.purpose == "incident-4711" };\n',
    );
    try {
      assert.equal(set.decide(fetch()).obligations.consent, true);
      const docs = caseInput(byName('fetch HEAD for docs research'));
      const d = set.decide(docs);
      assert.equal(d.allow, true);
      assert.equal(d.obligations.consent, undefined);
    } finally {
      set.close();
    }
  });

  for (const [engine, rego, cedar, id, message] of [
    [
      'rego',
      'obligations["notarize"] := true if _granted("http_fetch_scope")',
      '',
      'unknown_obligation',
      'rego: the policy requires an obligation this gateway does not know: "notarize"',
    ],
    [
      'cedar',
      '',
      '@id("fetch_notarized")\n@obligation("notarize")\npermit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText");\n',
      'unknown_obligation',
      'cedar: the policy requires an obligation this gateway does not know: "notarize"',
    ],
    [
      'cedar',
      '',
      '@id("fetch_typo")\n@redcat("email")\npermit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText");\n',
      'unknown_obligation',
      'cedar: the policy requires an obligation this gateway does not know: "redcat"',
    ],
    [
      'rego',
      '_redact contains "ssn" if _granted("http_fetch_scope")',
      '',
      'obligation_invalid',
      'rego: the policy\'s obligation "redact" names an unknown category "ssn" (known: email, phone, card, secrets)',
    ],
    [
      'cedar',
      '',
      '@id("fetch_size")\n@max_bytes("64k")\npermit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText");\n',
      'obligation_invalid',
      'cedar: the policy\'s obligation "max_bytes" is not an integer from 1 to 2147483647',
    ],
  ] as const) {
    it(`denies an allowed call whose ${engine} obligations the gateway cannot act on (${id}: ${message.split(': ').pop()})`, async () => {
      const set = await withExtra(`${engine}-${id}-${message.length}`, rego, cedar);
      try {
        const d = set.decide(fetch());
        assert.equal(d.allow, false);
        assert.deepEqual(d.reasons, [{ engine: 'gateway', id, message }]);
        assert.deepEqual(d.obligations, {});
        // Both engines allowed; the gateway's refusal is on the record beside them.
        assert.deepEqual(
          d.engines?.map((v) => `${v.engine}:${v.allow}`),
          ['rego:true', 'cedar:true', 'gateway:false'],
        );
      } finally {
        set.close();
      }
    });
  }
});

describe('hot reload', () => {
  let dir: string;
  before(async () => {
    dir = await copyPolicies();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('a reload that changes nothing is not a new revision: no swap, no reload event', async () => {
    const reloads: string[] = [];
    const set = await loadPolicies(
      { rego: { dir: join(dir, 'rego') }, cedar: { dir: join(dir, 'cedar') }, watch: false },
      { onReload: (i) => reloads.push(i.revision) },
    );
    try {
      const rev = set.revision;
      assert.equal(await set.reload(), true);
      assert.equal(set.revision, rev);
      assert.deepEqual(reloads, []);
      assert.equal(set.decide(caseInput(byName('eng reads /eng'))).allow, true, 'the running set still serves');
    } finally {
      set.close();
    }
  });

  for (const engine of ['rego', 'cedar'] as const) {
    it(`${engine}: swaps in an edit, keeps the last good set on a broken edit`, async () => {
      const policyFile = engine === 'rego' ? join(dir, 'rego', 'fs.rego') : join(dir, 'cedar', 'policies.cedar');
      const good = await readFile(policyFile, 'utf8');
      const reloads: string[] = [];
      const errors: GatewayError[] = [];
      const set = await loadPolicies(
        { engines: [engine], rego: { dir: join(dir, 'rego') }, cedar: { dir: join(dir, 'cedar') }, watch: true },
        { onReload: (i) => reloads.push(i.revision), onReloadError: (e) => errors.push(e) },
      );
      try {
        const input = caseInput(byName('support reads /eng'));
        assert.equal(set.decide(input).allow, false);
        const first = set.revision;

        // Grant support the /eng root too.
        const widened =
          engine === 'rego'
            ? good.replace('"support": {"/public"}', '"support": {"/public", "/eng"}')
            : good.replace(
                '(principal in MicroMcp::Group::"support" &&\n     (context.resource.path == "/public" ||',
                '(principal in MicroMcp::Group::"support" &&\n     (context.resource.path like "/eng/*" || context.resource.path == "/public" ||',
              );
        assert.notEqual(widened, good);
        await writeFile(policyFile, widened);
        await until(() => reloads.length === 1);
        assert.equal(set.decide(input).allow, true);
        assert.notEqual(set.revision, first);

        // A broken edit: reported with file and line, the widened set keeps serving.
        await writeFile(policyFile, `${widened}\n!!! not a policy\n`);
        await until(() => errors.length >= 1);
        assert.equal(errors[0]?.code, 'ERR_POLICY_COMPILE');
        assert.match(errors[0]?.message ?? '', new RegExp(`${engine === 'rego' ? 'fs\\.rego' : 'policies\\.cedar'}:\\d+: `));
        assert.equal(set.decide(input).allow, true);
        assert.equal(reloads.length, 1);
      } finally {
        set.close();
        await writeFile(policyFile, good);
      }
    });
  }
});
