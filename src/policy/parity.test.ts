import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { policyParity } from './cli.js';
import { resourceExtractor } from './input.js';
import { POLICY_METHODS } from './methods.js';
import { parityInputs } from './parity.js';
import { repoRoot } from './rego/opa.js';
import { EXAMPLE_RESOURCES } from './testing/cases.js';

const root = repoRoot() as string;

function capture(): { out: { write: (s: string) => boolean }; text: () => string } {
  let buf = '';
  return { out: { write: (s: string) => ((buf += s), true) }, text: () => buf };
}

// A rule Cedar can only approximate: Rego matches IPv4 literals exactly, Cedar's `like` pattern
// also catches any four-label host name (stricter; deny overrides keeps the stricter answer).
const REGO_IP = `package micro_mcp.authz

# METADATA
# title: http_host_ip_literal
# description: IPv4 literal hosts are not fetched.
_denies contains "http_host_ip_literal: IPv4 literal hosts are not fetched" if {
\t_fetch_call
\tregex.match(\`^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$\`, input.resource.host)
}
`;
const cedarIp = (
  declared: boolean,
) => `${declared ? '@parity("cedar like approximates the IPv4 regex; it is the stricter of the two")\n' : ''}@id("http_host_ip_literal")
@reason("IPv4 literal hosts are not fetched")
forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"http.fetchText")
when { context.resource has host && context.resource.host like "*.*.*.*" };
`;

describe('policy parity', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'micro-mcp-parity-'));
    await cp(join(root, 'policies'), dir, { recursive: true });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const run = async (count: number, seed: number) => {
    const c = capture();
    const code = await policyParity({ regoDir: join(dir, 'rego'), cedarDir: join(dir, 'cedar'), count, seed, resources: EXAMPLE_RESOURCES }, c.out);
    return { code, text: c.text() };
  };

  it('the same seed gives the same inputs; another seed others', () => {
    const resources = new Map(Object.entries(EXAMPLE_RESOURCES).map(([k, s]) => [k, resourceExtractor(s)]));
    const a = JSON.stringify([...parityInputs({ count: 50, seed: 9, services: ['fs', 'http'], resources })]);
    assert.equal(JSON.stringify([...parityInputs({ count: 50, seed: 9, services: ['fs', 'http'], resources })]), a);
    assert.notEqual(JSON.stringify([...parityInputs({ count: 50, seed: 10, services: ['fs', 'http'], resources })]), a);
    const inputs = [...parityInputs({ count: 2000, seed: 9, services: ['fs', 'http'], resources })];
    // Varied: every method of the table, list and call, and both allows and denials occur.
    assert.equal(new Set(inputs.map((i) => i.method)).size, Object.keys(POLICY_METHODS).length);
    assert.ok(inputs.some((i) => i.principal.type === 'service') && inputs.some((i) => i.resource.path === null));
  });

  it('the example policies: both engines agree on every generated input', async () => {
    const r = await run(3000, 7);
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /^parity: 3000 inputs \(seed 7\); the engines agree on 3000$/m);
    assert.match(r.text.trimEnd().split('\n').at(-1) ?? '', /^0 disagreements in 0 classes \(0 declared on purpose\)$/);
  });

  it('an undeclared approximation fails, by class, with a minimal example; declared on purpose it passes', async () => {
    await writeFile(join(dir, 'rego', 'zz_ip.rego'), REGO_IP);
    await writeFile(join(dir, 'cedar', 'zz_ip.cedar'), cedarIp(false));
    const bad = await run(10000, 7);
    assert.equal(bad.code, 1, bad.text);
    assert.match(bad.text, /^DIFF {2}rego deny \/ cedar deny; only cedar: http_host_ip_literal \(\d+ inputs?\)$/m);
    const example = /^ {6}minimal example: (.*)$/m.exec(bad.text)?.[1] ?? '';
    // A host name with three dots that is no IPv4 literal: what `like` catches and the regex does not.
    const host = (JSON.parse(example) as { resource: { host: string } }).resource.host;
    assert.ok(host.split('.').length >= 4 && !/^[0-9.]+$/.test(host), host);
    assert.match(bad.text.trimEnd().split('\n').at(-1) ?? '', /^[1-9]\d* disagreements? in 1 class \(0 declared on purpose\)$/);

    await writeFile(join(dir, 'cedar', 'zz_ip.cedar'), cedarIp(true));
    const declared = await run(10000, 7);
    assert.equal(declared.code, 0, declared.text);
    assert.match(declared.text, /^declared {2}rego deny \/ cedar deny; only cedar: http_host_ip_literal/m);
    assert.match(declared.text, /^ {6}http_host_ip_literal: cedar like approximates the IPv4 regex/m);
    assert.match(declared.text.trimEnd().split('\n').at(-1) ?? '', /^0 disagreements in 0 classes \([1-9]\d* declared on purpose\)$/);
  });

  it('obligations count: a Cedar annotation Rego does not state is a disagreement, never declared', async () => {
    await rm(join(dir, 'rego', 'zz_ip.rego'), { force: true });
    await rm(join(dir, 'cedar', 'zz_ip.cedar'), { force: true });
    const http = join(dir, 'cedar', 'policies.cedar');
    const original = await readFile(http, 'utf8');
    await writeFile(http, original.replace('@max_bytes("1048576")', '@max_bytes("1048576")\n@parity("not for obligations")\n@labels("pii")'));
    try {
      const r = await run(3000, 7);
      assert.equal(r.code, 1, r.text);
      assert.match(
        r.text,
        /^DIFF {2}rego allow \/ cedar allow; obligations: rego \{"max_bytes":1048576,"redact":\["email","secrets"\]\} \/ cedar \{"labels":\["pii"\],"max_bytes":1048576,"redact":\["email","secrets"\]\} \(\d+ inputs?\)$/m,
      );
    } finally {
      await writeFile(http, original);
    }
  });

  it('a declaration in Rego METADATA (custom: parity) counts too', async () => {
    await writeFile(
      join(dir, 'rego', 'zz_ip.rego'),
      REGO_IP.replace('# description: IPv4', '# custom:\n#   parity: the Cedar copy approximates this regex\n# description: IPv4'),
    );
    await writeFile(join(dir, 'cedar', 'zz_ip.cedar'), cedarIp(false));
    const r = await run(10000, 7);
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /^ {6}http_host_ip_literal: the Cedar copy approximates this regex$/m);
  });
});
