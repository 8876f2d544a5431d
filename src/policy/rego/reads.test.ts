/**
 * What a Rego policy is sent: only the input it can read (`opa deps` at build time), and answers
 * memoised on that when the policy is deterministic. Real opa CLI, real opa-wasm.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { PolicyInput } from '../../types.js';
import { buildPolicyInput, resourceExtractor } from '../input.js';
import { toolFacts } from '../tools.js';
import { EngineError } from '../types.js';
import { buildRegoBundle, readRegoBundle } from './bundle.js';
import { RegoEngine } from './engine.js';
import { repoRoot, resolveOpa } from './opa.js';

const root = repoRoot() as string;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** An engine built as the gateway builds one from a policy dir holding `rego`. */
async function engineOf(rego: string): Promise<{ engine: RegoEngine; reads: unknown }> {
  const dir = mkdtempSync(join(tmpdir(), 'micro-mcp-reads-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'p.rego'), `package micro_mcp.authz\n\ndefault allow := false\n\n${rego}\n`);
  const built = await buildRegoBundle(resolveOpa(), dir);
  return { engine: await RegoEngine.fromBundle(readRegoBundle(built.tarball, dir), dir, built.reads), reads: built.reads };
}

let seq = 0;
/** A tools/call input: a new request id, time and `other` argument every time. */
function call(args: Record<string, unknown>): PolicyInput {
  seq++;
  return buildPolicyInput({
    method: 'tools/call',
    principal: { id: 'alice', type: 'user', issuer: 'urn:t', groups: ['eng'], attributes: {}, scopes: ['x:call'], client: { id: 'c' }, purpose: null },
    tool: toolFacts('x.op', { readOnlyHint: true }),
    arguments: { ...args, other: `value-${seq}` },
    resource: resourceExtractor({}),
    context: { request_id: `r-${seq}`, time: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString() },
  });
}

describe('rego: the input a policy is sent', () => {
  it('opa deps finds what the example policies read: no arguments, of the context only data_labels', async () => {
    const built = await buildRegoBundle(resolveOpa(), join(root, 'policies', 'rego'));
    assert.deepEqual(built.reads, [
      ['action'],
      ['context', 'data_labels'],
      ['principal', 'groups'],
      ['principal', 'purposes'],
      ['purpose'],
      ['resource'],
      ['resource', 'host'],
      ['resource', 'method'],
      ['resource', 'path'],
      ['resource', 'scheme'],
      ['resource', 'url'],
      ['scopes'],
      ['tool'],
      ['tool', 'local_name'],
      ['tool', 'namespace'],
    ]);
  });

  it('answers by the arguments it reads, and from the memo when only unread ones, the time or the request id differ', async () => {
    const { engine, reads } = await engineOf('allow if input.arguments.mode == "read"');
    try {
      assert.deepEqual(reads, [['arguments', 'mode']]);
      assert.equal(engine.memoised, true);
      assert.equal(engine.evaluate(call({ mode: 'read' })).allow, true);
      // Same mode, new `other`, time and request id: kept the second time it is seen, and from then
      // on the very same (frozen) answer object.
      const second = engine.evaluate(call({ mode: 'read' }));
      assert.equal(second.allow, true);
      assert.equal(engine.evaluate(call({ mode: 'read' })), second);
      assert.ok(Object.isFrozen(second) && Object.isFrozen(second.reasons));
      const denied = engine.evaluate(call({ mode: 'write' }));
      assert.equal(denied.allow, false);
      assert.deepEqual(
        denied.reasons.map((r) => r.id),
        ['default_deny'],
      );
      // An absent argument stays absent (not null): the rule does not fire.
      assert.equal(engine.evaluate(call({})).allow, false);
      assert.equal(engine.evaluate(call({ mode: 'read' })).allow, true);
    } finally {
      engine.close();
    }
  });

  it('follows an import of input: the aliased path is read', async () => {
    const { engine, reads } = await engineOf('import input.arguments as args\n\nallow if args.mode == "read"');
    try {
      assert.deepEqual(reads, [['arguments', 'mode']]);
      assert.equal(engine.evaluate(call({ mode: 'read' })).allow, true);
      assert.equal(engine.evaluate(call({ mode: 'write' })).allow, false);
    } finally {
      engine.close();
    }
  });

  it('sends the whole input to a policy that reads input itself, and does not memoise it', async () => {
    const { engine, reads } = await engineOf('allow if {\n\tsome path, value\n\twalk(input, [path, value])\n\tvalue == "open sesame"\n}');
    try {
      assert.equal(reads, null);
      assert.equal(engine.memoised, false);
      assert.equal(engine.evaluate(call({ deep: { deeper: ['open sesame'] } })).allow, true);
      assert.equal(engine.evaluate(call({ deep: { deeper: ['closed'] } })).allow, false);
    } finally {
      engine.close();
    }
  });

  it('does not memoise a policy that calls a nondeterministic builtin (time.now_ns, which opa-wasm does not implement: the call fails)', async () => {
    const { engine } = await engineOf('allow if {\n\tinput.arguments.mode == "read"\n\ttime.now_ns() > 0\n}');
    try {
      assert.equal(engine.memoised, false);
      for (let i = 0; i < 2; i++) {
        assert.throws(
          () => engine.evaluate(call({ mode: 'read' })),
          (e: unknown) =>
            e instanceof EngineError &&
            e.code === 'ERR_ENGINE_EVALUATION' &&
            /^rego evaluation failed: not implemented: built-in function \d+: time\.now_ns$/.test(e.message),
        );
      }
    } finally {
      engine.close();
    }
  });

  it('sends a bundle built elsewhere the whole input (what it reads is not known)', async () => {
    const built = await buildRegoBundle(resolveOpa(), join(root, 'policies', 'rego'));
    const engine = await RegoEngine.fromBundle(readRegoBundle(built.tarball, 'bundle'), 'bundle');
    try {
      assert.equal(engine.memoised, false);
    } finally {
      engine.close();
    }
  });
});
