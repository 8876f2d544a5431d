import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig, DEV_CONFIG_PATH } from '../config/load.js';
import { buildPolicyInput, canonicalFsPath, failedDecision, httpResource, resourceExtractor, resourceExtractors } from './input.js';
import { EXAMPLE_RESOURCES, testPrincipal } from './testing/cases.js';
import { toolFacts } from './tools.js';

describe('canonicalFsPath', () => {
  const cases: [unknown, string | null][] = [
    ['docs/a.md', '/docs/a.md'],
    ['/docs/./b/../a.md', '/docs/a.md'],
    ['/eng/', '/eng'],
    ['//eng//x', '/eng/x'],
    ['', '/'],
    ['/', '/'],
    ['/public/../eng/x', '/eng/x'],
    ['/../etc/passwd', null],
    ['a/../../b', null],
    ['/eng/a\0b', null],
    ['\\eng\\a', null],
    ['/eng/%2e%2e/x', null],
    ['/eng/%2F', null],
    [42, null],
    [undefined, null],
  ];
  for (const [input, want] of cases) {
    it(`${JSON.stringify(input)} -> ${JSON.stringify(want)}`, () => assert.equal(canonicalFsPath(input), want));
  }
});

describe('httpResource', () => {
  it('parses with WHATWG rules and fills default ports', () => {
    assert.deepEqual(httpResource('https://Status.Example.com/a?b', undefined), {
      url: 'https://status.example.com/a?b',
      scheme: 'https',
      host: 'status.example.com',
      port: 443,
      method: 'GET',
    });
    assert.equal(httpResource('http://127.0.0.1:8081/', 'head').port, 8081);
    assert.equal(httpResource('http://127.0.0.1:8081/', 'head').method, 'HEAD');
    assert.equal(httpResource('http://[::1]/', undefined).host, '[::1]');
    assert.equal(httpResource('file:///etc/passwd', undefined).port, null);
  });
  it('is all null on a bad URL, keeping the method', () => {
    assert.deepEqual(httpResource('not a url', 'GET'), { url: null, scheme: null, host: null, port: null, method: 'GET' });
    assert.equal(httpResource(undefined, 7).method, null);
  });
});

describe('buildPolicyInput', () => {
  const principal = testPrincipal('alice', ['eng'], ['fs:read']);
  it('extracts path facts in the call phase, as the service declares', () => {
    const input = buildPolicyInput({
      method: 'tools/call',
      principal,
      tool: toolFacts('docs.read'),
      arguments: { path: 'eng/a.md' },
      resource: resourceExtractor({ kind: 'path', arg: 'path' }),
      context: { request_id: 'r1' },
    });
    assert.deepEqual(input.resource, { path: '/eng/a.md' });
    assert.deepEqual(input.arguments, { path: 'eng/a.md' });
    assert.equal(input.context.session_id, null);
    assert.ok(!Number.isNaN(Date.parse(input.context.time)));
    assert.equal('scopes' in input.principal, false, 'scopes sit at the top level only');
  });
  it('omits arguments and resource facts in the list phase', () => {
    const input = buildPolicyInput({
      method: 'tools/list',
      principal,
      tool: toolFacts('fs.read'),
      arguments: { path: '/x' },
      resource: resourceExtractor({ kind: 'path' }),
      context: { request_id: 'r' },
    });
    assert.equal(input.arguments, undefined);
    assert.deepEqual(input.resource, {});
  });
  it('fills phase and action from the one method table', () => {
    const base = { principal, tool: toolFacts('x.y'), context: { request_id: 'r' } };
    const pick = (method: string) => {
      const i = buildPolicyInput({ ...base, method });
      return `${i.phase}:${i.action}`;
    };
    assert.equal(pick('tools/call'), 'call:call_tool');
    assert.equal(pick('tools/list'), 'list:list_tools');
    assert.equal(pick('prompts/list'), 'list:list_prompts');
    assert.equal(pick('prompts/get'), 'call:get_prompt');
    assert.equal(pick('resources/list'), 'list:list_resources');
    assert.equal(pick('resources/templates/list'), 'list:list_resource_templates');
    assert.equal(pick('resources/read'), 'call:read_resource');
    assert.equal(pick('resources/subscribe'), 'call:subscribe_resource');
    assert.equal(pick('completion/complete'), 'call:complete');
    assert.equal(buildPolicyInput({ ...base, method: 'ping' }).action, '', 'unknown: the combiner refuses it');
  });
  it('url facts, named facts by JSON pointer, and a root, for any service name', () => {
    const url = resourceExtractor({ kind: 'url', arg: 'target', method_arg: 'verb', facts: { team: '/meta/team' } });
    assert.deepEqual(url({ target: 'https://A.example/x', verb: 'head', meta: { team: 'sre' } }), {
      url: 'https://a.example/x',
      scheme: 'https',
      host: 'a.example',
      port: 443,
      method: 'HEAD',
      team: 'sre',
    });
    const named = resourceExtractor({ facts: { repo: '/repo', table: '/query/table', n: '/n', first: '/list/0', odd: '/a~1b', obj: '/query' } });
    assert.deepEqual(named({ repo: 'core', query: { table: 'users' }, n: 3, list: [true], 'a/b': 'x' }), {
      repo: 'core',
      table: 'users',
      n: 3,
      first: true,
      odd: 'x',
      obj: null,
    });
    assert.deepEqual(named({}), { repo: null, table: null, n: null, first: null, odd: null, obj: null });
    assert.deepEqual(resourceExtractor({ kind: 'path', root: 'docs' })({ path: '/a/../b' }), { path: '/b', root: 'docs' });
  });
  it("the example resource declarations the tests use are the dev config's", () => {
    const cfg = loadConfig(DEV_CONFIG_PATH);
    for (const [name, spec] of Object.entries(EXAMPLE_RESOURCES)) assert.deepEqual(cfg.services[name]?.resource, spec, name);
    assert.deepEqual([...resourceExtractors(cfg.services).keys()].sort(), ['fs', 'github', 'http', 'vector']);
  });
  it('gives services without a declaration an empty resource', () => {
    const input = buildPolicyInput({
      method: 'tools/call',
      principal,
      tool: toolFacts('everything.echo'),
      arguments: { path: '/x' },
      context: { request_id: 'r' },
    });
    assert.deepEqual(input.resource, {});
  });
  it('binds the token purpose over a declared one, and ignores empty purposes', () => {
    const base = { method: 'tools/call', tool: toolFacts('everything.echo'), context: { request_id: 'r' } };
    assert.equal(buildPolicyInput({ ...base, principal, purpose: 'incident-4711' }).purpose, 'incident-4711');
    assert.equal(buildPolicyInput({ ...base, principal, purpose: '' }).purpose, null);
    const bound = { ...principal, purpose: 'docs-research' };
    assert.equal(buildPolicyInput({ ...base, principal: bound, purpose: 'incident-4711' }).purpose, 'docs-research');
  });
});

describe('failedDecision: deciding itself failed', () => {
  it('is a deny by the gateway (engine_error, ERR_POLICY_UNAVAILABLE) at the loaded revision, with no obligations', () => {
    const reason = { engine: 'gateway', id: 'engine_error', message: 'policy evaluation failed' };
    assert.deepEqual(failedDecision('rev-7'), {
      allow: false,
      reasons: [reason],
      engines: [{ engine: 'gateway', allow: false, reasons: [reason], error: 'ERR_POLICY_UNAVAILABLE' }],
      obligations: {},
      policy_revision: 'rev-7',
      eval_us: 0,
    });
  });
});
