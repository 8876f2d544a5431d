import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildPolicyInput, canonicalFsPath, httpResource } from './input.js';
import { testPrincipal } from './testing/cases.js';
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
  it('extracts fs facts in the call phase', () => {
    const input = buildPolicyInput({
      phase: 'call',
      method: 'tools/call',
      principal,
      tool: toolFacts('fs.read'),
      arguments: { path: 'eng/a.md' },
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
      phase: 'list',
      method: 'tools/list',
      principal,
      tool: toolFacts('fs.read'),
      arguments: { path: '/x' },
      context: { request_id: 'r' },
    });
    assert.equal(input.arguments, undefined);
    assert.deepEqual(input.resource, {});
  });
  it('gives other services an empty resource', () => {
    const input = buildPolicyInput({
      phase: 'call',
      method: 'tools/call',
      principal,
      tool: toolFacts('everything.echo'),
      arguments: { path: '/x' },
      context: { request_id: 'r' },
    });
    assert.deepEqual(input.resource, {});
  });
  it('binds the token purpose over a declared one, and ignores empty purposes', () => {
    const base = { phase: 'call' as const, method: 'tools/call', tool: toolFacts('everything.echo'), context: { request_id: 'r' } };
    assert.equal(buildPolicyInput({ ...base, principal, purpose: 'incident-4711' }).purpose, 'incident-4711');
    assert.equal(buildPolicyInput({ ...base, principal, purpose: '' }).purpose, null);
    const bound = { ...principal, purpose: 'docs-research' };
    assert.equal(buildPolicyInput({ ...base, principal: bound, purpose: 'incident-4711' }).purpose, 'docs-research');
  });
});
