import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from '../rego/opa.js';
import { caseInput, EXAMPLE_RESOURCES, POLICY_CASES, testPrincipal } from '../testing/cases.js';
import { buildPolicyInput, resourceExtractor, resourceExtractors } from '../input.js';
import { parityInputs } from '../parity.js';
import { toolFacts } from '../tools.js';
import { CedarEngine } from './engine.js';
import { toCedarRequest } from './request.js';
import type { Clause, Expr, PolicyJson } from '@cedar-policy/cedar-wasm/nodejs';
import { EngineError } from '../types.js';
import { actionMayMatch, certainlyFalse, resourceMayMatch, testedMembers } from './slice.js';

const root = repoRoot() as string;
const T = { action: 'call_tool', tool: 'fs.read', namespace: 'fs' };
const uid = (type: string, id: string) => ({ type: `MicroMcp::${type}`, id });

describe('cedar slice scopes', () => {
  it('keep a policy unless its scope certainly excludes the action and tool', () => {
    assert.equal(resourceMayMatch({ op: 'All' }, T), true);
    assert.equal(resourceMayMatch({ op: '==', entity: uid('Tool', 'fs.read') }, T), true);
    assert.equal(resourceMayMatch({ op: '==', entity: uid('Tool', 'fs.list') }, T), false);
    assert.equal(resourceMayMatch({ op: '==', entity: { __entity: uid('Tool', 'fs.read') } }, T), true);
    assert.equal(resourceMayMatch({ op: 'in', entity: uid('Service', 'fs') }, T), true);
    assert.equal(resourceMayMatch({ op: 'in', entity: uid('Service', 'http') }, T), false);
    assert.equal(resourceMayMatch({ op: 'in', entity: uid('Tool', 'fs.read') }, T), true);
    assert.equal(resourceMayMatch({ op: 'is', entity_type: 'MicroMcp::Tool' }, T), true);
    assert.equal(resourceMayMatch({ op: 'is', entity_type: 'MicroMcp::Service' }, T), false);
    assert.equal(resourceMayMatch({ op: 'is', entity_type: 'MicroMcp::Tool', in: { entity: uid('Service', 'http') } }, T), false);
    assert.equal(resourceMayMatch({ op: '==', slot: '?resource' }, T), true);
    assert.equal(actionMayMatch({ op: 'All' }, 'call_tool'), true);
    assert.equal(actionMayMatch({ op: '==', entity: uid('Action', 'list_tools') }, 'call_tool'), false);
    assert.equal(actionMayMatch({ op: 'in', entities: [uid('Action', 'list_tools'), uid('Action', 'call_tool')] }, 'call_tool'), true);
    assert.equal(actionMayMatch({ op: 'in', entities: [uid('Action', 'list_tools')] }, 'call_tool'), false);
  });
});

describe('cedar residuals certainly false', () => {
  // Residuals as Cedar's partial evaluation writes them, the context values unknown.
  const unknown = (name: string): Expr => ({ unknown: [{ Value: name }] });
  const v = (x: boolean | string): Expr => ({ Value: x });
  const bin = (op: '==' | '!=' | '&&' | '||', left: Expr, right: Expr): Expr => {
    const operands = { left, right };
    if (op === '==') return { '==': operands };
    if (op === '!=') return { '!=': operands };
    return op === '&&' ? { '&&': operands } : { '||': operands };
  };
  const attr = (left: Expr, name: string): Expr => ({ '.': { left, attr: name } });
  const when = (body: Expr): Clause => ({ kind: 'when', body });
  const unless = (body: Expr): Clause => ({ kind: 'unless', body });
  const purposeEmpty = bin('==', unknown('purpose'), v(''));
  const pathIs = bin('==', attr(unknown('resource'), 'path'), v('/x'));

  it('holds where no value of the unknowns can make the conditions true or err', () => {
    assert.equal(certainlyFalse([when(v(false))]), true);
    // The tool's hints settled the right side: purpose_required on a read-only closed-world tool.
    assert.equal(certainlyFalse([when(bin('&&', purposeEmpty, v(false)))]), true);
    assert.equal(certainlyFalse([when(bin('&&', v(true), bin('&&', purposeEmpty, v(false))))]), true);
    assert.equal(certainlyFalse([when(bin('&&', v(false), pathIs))]), true, 'the right side of a false && is never evaluated');
    assert.equal(certainlyFalse([when(bin('||', bin('!=', unknown('purpose'), v('a')), v(true))), when(v(false))]), true);
    assert.equal(certainlyFalse([unless(bin('||', purposeEmpty, v(true)))]), true);
    assert.equal(certainlyFalse([when(v(false)), when(pathIs)]), true, 'clauses are joined by && in order');
    assert.equal(certainlyFalse([when({ '!': { arg: bin('||', v(true), pathIs) } })]), true);
  });

  it('does not hold where a value can make them true, or their evaluation can err', () => {
    assert.equal(certainlyFalse([]), false);
    assert.equal(certainlyFalse([when(v(true))]), false);
    assert.equal(certainlyFalse([when(purposeEmpty)]), false);
    assert.equal(certainlyFalse([when(bin('||', purposeEmpty, v(false)))]), false);
    // An attribute of an unknown may be missing: Cedar reports the policy as erring, not false.
    assert.equal(certainlyFalse([when(bin('&&', pathIs, v(false)))]), false);
    // A non-boolean operand is a type error.
    assert.equal(certainlyFalse([when(bin('&&', v('yes'), v(false)))]), false);
    assert.equal(certainlyFalse([when(bin('&&', unknown('purpose'), v(false)))]), false);
    assert.equal(certainlyFalse([when(pathIs), when(v(false))]), false, 'an earlier clause that may err is evaluated first');
    assert.equal(certainlyFalse([unless(purposeEmpty)]), false);
    assert.equal(certainlyFalse([when({ like: { left: unknown('purpose'), pattern: [] } })]), false);
  });
});

describe('cedar context sets tested for literal members', () => {
  const scopes: Expr = { '.': { left: { Var: 'context' }, attr: 'scopes' } };
  const labels: Expr = { '.': { left: { Var: 'context' }, attr: 'data_labels' } };
  const policy = (body: Expr): PolicyJson => ({
    effect: 'permit',
    principal: { op: 'All' },
    action: { op: 'All' },
    resource: { op: 'All' },
    conditions: [{ kind: 'when', body }],
  });
  const members = (...bodies: Expr[]) => Object.fromEntries([...testedMembers(bodies.map(policy))].map(([k, v]) => [k, [...v].sort()]));
  const has: Expr = { has: { left: { Var: 'context' }, attr: 'data_labels' } };

  it('are the literals of contains, containsAny and containsAll, across policies', () => {
    assert.deepEqual(
      members(
        { contains: { left: scopes, right: { Value: 'fs:read' } } },
        { containsAny: { left: scopes, right: { Set: [{ Value: 'a:x' }, { Value: 'b:x' }] } } },
        { '&&': { left: has, right: { containsAll: { left: labels, right: { Set: [{ Value: 'pii' }] } } } } },
      ),
      { scopes: ['a:x', 'b:x', 'fs:read'], data_labels: ['pii'] },
    );
  });

  it('leave out a set read any other way, and every set when the context itself is read', () => {
    const lit = { contains: { left: scopes, right: { Value: 'fs:read' } } };
    assert.deepEqual(members(lit, { '==': { left: scopes, right: { Set: [{ Value: 'fs:read' }] } } }), { data_labels: [] });
    assert.deepEqual(members(lit, { isEmpty: { arg: scopes } }), { data_labels: [] });
    assert.deepEqual(members({ contains: { left: scopes, right: { '.': { left: { Var: 'context' }, attr: 'purpose' } } } }), { data_labels: [] });
    assert.deepEqual(members(lit, { '==': { left: { Var: 'context' }, right: { Record: {} } } }), {});
  });
});

describe('cedar engine on slices', () => {
  let engine: CedarEngine;
  let dir: string;
  before(async () => {
    // The example policies plus rules for other tools and services: a slice must drop those and
    // still give what the whole set gives.
    dir = mkdtempSync(join(tmpdir(), 'micro-mcp-slice-'));
    for (const f of ['policies.cedar', 'schema.cedarschema']) copyFileSync(join(root, 'policies', 'cedar', f), join(dir, f));
    writeFileSync(
      join(dir, 'extra.cedar'),
      [
        '@id("other_tool_forbid")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"fs.list");',
        '@id("other_service_forbid")',
        'forbid (principal, action, resource in MicroMcp::Service::"http");',
        '@id("list_only_forbid")',
        'forbid (principal, action == MicroMcp::Action::"list_tools", resource == MicroMcp::Tool::"fs.read");',
        '@id("read_outside_tmp")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource is MicroMcp::Tool in MicroMcp::Service::"fs")',
        'when { context.resource has path && context.resource.path like "/eng/secret*" };',
        // Pruning traps: the presence of data_labels is a fact (a context that has it unknown would
        // make this unless hold), and a principal named by its entity is not in the partial request.
        '@id("labels_absent_incident")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"fs.read")',
        'unless { context has data_labels || context.purpose != "incident-4711" };',
        '@id("mallory_in_eng")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"fs.read")',
        'when { MicroMcp::User::"mallory" in MicroMcp::Group::"eng" && principal == MicroMcp::User::"mallory" };',
        // Holds for a tool by its hints alone: pruned for one set of hints, in force for another.
        '@id("destructive_forbid")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource) when { resource has destructiveHint && resource.destructiveHint };',
        // The only rule that reads principal.type, on one tool: that tool's slice must send it.
        '@id("agents_cannot_list")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"fs.list") when { principal.type == "agent" };',
        // The tool's hints make the last part false, but the part before can err (an overflow with
        // any port above 1): a slice that dropped it would answer where the whole set errs.
        '@id("port_overflow_trap")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"trap.peek")',
        'when { context.resource has port && context.resource.port * 4611686018427387904 > 0 && resource has destructiveHint && resource.destructiveHint };',
        // Errs on every call of the tool, whatever the caller and arguments (the overflow needs only
        // the tool's facts): partial evaluation reports it erring with a residual of false.
        '@id("tool_overflow_trap")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"trap.poke")',
        'when { resource.call_scope == "trap:call" && 9223372036854775807 + 1 > 0 };',
        // A Long beyond 2^53 in the residual: read back as a JS number it would be 9007199254740992,
        // and the condition, true for port 1 as written, false.
        // Partial evaluation leaves the right of an unknown && as written: this residual still
        // reads the tool's entity, which its requests must then carry.
        '@id("purpose_on_peek")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"trap.peek")',
        'when { context.purpose == "forbidden" && resource.call_scope == "trap:call" };',
        // Reads the scopes as a whole (==): every scope must be sent, not only the literals the
        // other policies of the slice test for.
        '@id("scopes_exactly")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"trap.scopes")',
        'when { context.scopes == ["trap:call"] };',
        '@id("scopes_granted")',
        'permit (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"trap.scopes")',
        'when { context.scopes.contains("trap:call") && context.scopes.containsAny(["a:x", "b:x"]) };',
        '@id("long_literal_trap")',
        'forbid (principal, action == MicroMcp::Action::"call_tool", resource == MicroMcp::Tool::"trap.peek")',
        'when { context.resource has port && 9007199254740993 - context.resource.port == 9007199254740992 };',
      ].join('\n'),
    );
    engine = await CedarEngine.load(dir);
  });
  after(() => {
    engine.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const whole = (input: ReturnType<typeof caseInput>) => {
    const a = engine.authorize(toCedarRequest(input));
    return { allow: a.decision === 'allow', ids: a.reason };
  };
  const sliced = (input: ReturnType<typeof caseInput>) => {
    const r = engine.evaluate(input);
    return { allow: r.allow, ids: r.reasons.map((x) => x.id).filter((id) => id !== 'allow' && id !== 'default_deny') };
  };

  it('decides every shared case as the whole set does', () => {
    for (const c of POLICY_CASES) {
      const input = caseInput(c);
      assert.deepEqual(sliced(input), whole(input), c.name);
    }
  });

  it('applies the rules of the tool and its service, and no other', () => {
    const alice = testPrincipal('alice', ['eng'], ['fs:read']);
    const call = (tool: string, method: 'tools/call' | 'tools/list', path: string) =>
      buildPolicyInput({
        method,
        principal: alice,
        tool: toolFacts(tool, { readOnlyHint: true, openWorldHint: false }),
        arguments: method === 'tools/call' ? { path } : undefined,
        resource: resourceExtractor({ kind: 'path', arg: 'path' }),
        context: { request_id: 'slice' },
      });
    const cases: Array<[string, 'tools/call' | 'tools/list', string, boolean, string[]]> = [
      ['fs.read', 'tools/call', '/eng/runbook.md', true, ['fs_read_scope']],
      ['fs.read', 'tools/call', '/eng/secret.md', false, ['read_outside_tmp']],
      ['fs.read', 'tools/list', '/eng/runbook.md', false, ['list_only_forbid']],
      ['fs.list', 'tools/call', '/eng', false, ['other_tool_forbid']],
      ['fs.stat', 'tools/call', '/eng/secret.md', false, ['read_outside_tmp']],
    ];
    for (const [tool, method, path, allow, ids] of cases) {
      const input = call(tool, method, path);
      const got = sliced(input);
      assert.deepEqual(got, whole(input), `${tool} ${method} ${path}`);
      assert.equal(got.allow, allow, `${tool} ${method} ${path}`);
      assert.deepEqual(got.ids, ids, `${tool} ${method} ${path}`);
    }
  });

  const fsRead = (who: string, purpose: string | null, labels?: string[]) =>
    buildPolicyInput({
      method: 'tools/call',
      principal: testPrincipal(who, ['eng'], ['fs:read']),
      tool: toolFacts('fs.read', { readOnlyHint: true, openWorldHint: false }),
      arguments: { path: '/eng/runbook.md' },
      purpose,
      resource: resourceExtractor({ kind: 'path', arg: 'path' }),
      context: { request_id: 'slice', ...(labels ? { data_labels: labels } : {}) },
    });

  it('leaves out the policies that no call of the tool can satisfy, and keeps every other', () => {
    assert.deepEqual(engine.policiesFor(fsRead('alice', null)), [
      'read_outside_tmp',
      'labels_absent_incident',
      'mallory_in_eng',
      'fs_read_scope',
      'fs_path_not_permitted',
      'purpose_not_granted',
      'fs_read_scope_missing',
      'fs_requires_group',
      'fs_path_invalid',
    ]);
  });

  /** A call of a trap.* tool (read-only, closed-world) by alice; a url argument gives URL facts. */
  const trapCall = (tool: string, o: { url?: string; purpose?: string; scopes?: string[] } = {}) =>
    buildPolicyInput({
      method: 'tools/call',
      principal: testPrincipal('alice', ['eng'], o.scopes ?? ['trap:call']),
      tool: toolFacts(tool, { readOnlyHint: true, openWorldHint: false }),
      arguments: o.url !== undefined ? { url: o.url } : {},
      ...(o.purpose !== undefined ? { purpose: o.purpose } : {}),
      resource: resourceExtractor(o.url !== undefined ? { kind: 'url', arg: 'url' } : { kind: 'none' }),
      context: { request_id: 'slice' },
    });
  /** The policy is in the slice, the whole set errs on it, and so does the sliced decision (closed). */
  const errsAsWhole = (input: ReturnType<typeof trapCall>, id: string) => {
    assert.ok(engine.policiesFor(input).includes(id));
    assert.deepEqual(engine.authorize(toCedarRequest(input)).errors, [id]);
    assert.throws(
      () => engine.evaluate(input),
      (e) => e instanceof EngineError && e.code === 'ERR_ENGINE_EVALUATION' && e.message.includes(id),
    );
  };

  it('keeps a policy whose residual is false only if nothing before it errs, and errs as the whole set does', () => {
    errsAsWhole(trapCall('trap.peek', { url: 'https://status.example.com:8443/' }), 'port_overflow_trap');
  });

  it('keeps a policy that errs on every call of the tool, and errs as the whole set does', () => {
    errsAsWhole(trapCall('trap.poke'), 'tool_overflow_trap');
  });

  it('keeps a policy whose residual holds a Long beyond 2^53 as written, and decides as the whole set does', () => {
    // Port 1: the overflow trap on the same tool holds no error there (1 * 2^62 fits).
    const p1 = trapCall('trap.peek', { url: 'https://status.example.com:1/' });
    assert.equal(engine.preparedFor(p1).residuals.includes('long_literal_trap'), false);
    assert.deepEqual(sliced(p1), { allow: false, ids: ['long_literal_trap'] });
    assert.deepEqual(sliced(p1), whole(p1));
  });

  it('sends the tool entity for a residual that still reads it, and decides as the whole set does', () => {
    // Port 1, as above: the overflow trap on this tool holds no error there.
    const peek = trapCall('trap.peek', { url: 'https://status.example.com:1/', purpose: 'forbidden' });
    const prepared = engine.preparedFor(peek);
    assert.ok(prepared.residuals.includes('purpose_on_peek'));
    assert.equal(prepared.toolEntity, true);
    // Port 1 also meets long_literal_trap; the purpose is granted to nobody.
    assert.deepEqual(sliced(peek), { allow: false, ids: ['long_literal_trap', 'purpose_not_granted', 'purpose_on_peek'] });
    assert.deepEqual(sliced(peek), whole(peek));
  });

  it('sends a context set cut to the members its policies test for only when no policy reads it otherwise', () => {
    const call = (scopes: string[]) => trapCall('trap.scopes', { scopes });
    assert.equal(engine.preparedFor(call(['trap:call'])).members.scopes, undefined);
    // With only the tested members sent, scopes == ["trap:call"] would hold and forbid.
    for (const scopes of [['trap:call', 'a:x'], ['trap:call'], ['trap:call', 'b:x', 'c:x']]) {
      assert.deepEqual(sliced(call(scopes)), whole(call(scopes)), scopes.join(' '));
    }
    assert.deepEqual(sliced(call(['trap:call', 'a:x'])), { allow: true, ids: ['scopes_granted', 'service_call_scope'] });
    const fsMembers = engine.preparedFor(fsRead('alice', null)).members;
    assert.deepEqual(fsMembers.scopes, ['fs:read']);
  });

  it('decides generated calls, with and without data labels, as the whole set does: allow, reasons and errors', () => {
    const services = ['fs', 'http', 'github', 'vector', 'trap', 'echo'];
    const answer = (f: () => { allow: boolean; ids: string[] }) => {
      try {
        return f();
      } catch (e) {
        if (!(e instanceof EngineError)) throw e;
        return { error: e.message.replace(/^.*: /, '').split(', ').sort() };
      }
    };
    const wholeAnswer = (input: ReturnType<typeof caseInput>) => {
      const a = engine.authorize(toCedarRequest(input));
      return a.errors.length > 0 ? { error: [...a.errors].sort() } : { allow: a.decision === 'allow', ids: a.reason };
    };
    let n = 0;
    for (const input of parityInputs({
      count: 1500,
      seed: 11,
      services,
      resources: resourceExtractors(Object.fromEntries(Object.entries(EXAMPLE_RESOURCES).map(([k, v]) => [k, { resource: v }]))),
    })) {
      const labelled = n++ % 2 === 1 ? { ...input, context: { ...input.context, data_labels: ['internal'] } } : input;
      assert.deepEqual(
        answer(() => sliced(labelled)),
        wholeAnswer(labelled),
        JSON.stringify(labelled),
      );
    }
  });

  it('cuts a slice per set of hints: the same tool, declared destructive, gets the rule on destructive tools', () => {
    const destructive = { ...fsRead('alice', null), tool: toolFacts('fs.read', { readOnlyHint: true, openWorldHint: false, destructiveHint: true }) };
    assert.ok(engine.policiesFor(destructive).includes('destructive_forbid'));
    assert.deepEqual(sliced(destructive), { allow: false, ids: ['destructive_forbid'] });
    assert.deepEqual(sliced(destructive), whole(destructive));
    assert.deepEqual(sliced(fsRead('alice', null)), { allow: true, ids: ['fs_read_scope'] });
  });

  it('decides the pruning traps as the whole set does', () => {
    const cases: Array<[string, ReturnType<typeof fsRead>, boolean, string[]]> = [
      ['incident purpose, no labels', fsRead('alice', 'incident-4711'), false, ['labels_absent_incident']],
      ['incident purpose, labels', fsRead('alice', 'incident-4711', ['internal']), true, ['fs_read_scope']],
      ['mallory', fsRead('mallory', null), false, ['mallory_in_eng']],
      ['alice', fsRead('alice', null), true, ['fs_read_scope']],
    ];
    for (const [name, input, allow, ids] of cases) {
      const got = sliced(input);
      assert.deepEqual(got, whole(input), name);
      assert.equal(got.allow, allow, name);
      assert.deepEqual(got.ids, ids, name);
    }
  });

  it('runs a policy as its residual for the tool where it can, and sends the tool entity only when a policy can read it', () => {
    // mallory_in_eng names a User entity and keeps its scope on Tool::"fs.read": kept as written.
    const prepared = engine.preparedFor(fsRead('alice', null));
    assert.deepEqual(
      prepared.residuals,
      engine.policiesFor(fsRead('alice', null)).filter((id) => id !== 'mallory_in_eng'),
    );
    assert.equal(prepared.toolEntity, true);
  });

  it('sends only the attributes the slice reads, and decides as the whole set does', () => {
    assert.deepEqual(engine.attributesFor(fsRead('alice', null)), ['data_labels', 'path', 'purpose', 'purposes', 'resource', 'scopes']);
    assert.ok(engine.attributesFor({ ...fsRead('alice', null), tool: toolFacts('fs.list', {}) })?.includes('type'));
    const agent = (tool: string) =>
      buildPolicyInput({
        method: 'tools/call',
        principal: testPrincipal('bot', ['eng'], ['fs:read'], 'agent'),
        tool: toolFacts(tool, { readOnlyHint: true, openWorldHint: false }),
        arguments: { path: '/eng' },
        resource: resourceExtractor({ kind: 'path', arg: 'path' }),
        context: { request_id: 'slice' },
      });
    assert.deepEqual(sliced(agent('fs.list')), { allow: false, ids: ['agents_cannot_list', 'other_tool_forbid'] });
    assert.deepEqual(sliced(agent('fs.list')), whole(agent('fs.list')));
    assert.deepEqual(sliced(agent('fs.read')), { allow: true, ids: ['fs_read_scope'] });
    assert.deepEqual(sliced(agent('fs.read')), whole(agent('fs.read')));
  });
});

describe('cedar residual sets on the example policies', () => {
  let engine: CedarEngine;
  before(async () => {
    engine = await CedarEngine.load(join(root, 'policies', 'cedar'));
  });
  after(() => engine.close());

  it('run every policy of a tools/call slice as its residual, without the tool entity', () => {
    for (const c of POLICY_CASES) {
      const input = caseInput(c);
      if (input.action !== 'call_tool') continue;
      const prepared = engine.preparedFor(input);
      assert.deepEqual(prepared.residuals, engine.policiesFor(input), c.name);
      assert.equal(prepared.toolEntity, false, c.name);
      // The residuals test the scopes for literal members only (the tool's own scope, if any).
      assert.ok((prepared.members.scopes?.length ?? 9) <= 1, c.name);
      const a = engine.authorize(toCedarRequest(input));
      const r = engine.evaluate(input);
      assert.equal(r.allow, a.decision === 'allow', c.name);
    }
  });

  it('keep list decisions on the policies as written, with the tool entity', () => {
    const input = { ...caseInput(POLICY_CASES[0] as (typeof POLICY_CASES)[number]), action: 'list_tools' };
    // The list rules read context.scopes with a non-literal (the tool's call_scope): sent whole.
    assert.deepEqual(engine.preparedFor(input), { residuals: [], toolEntity: true, members: { data_labels: [] } });
  });
});
