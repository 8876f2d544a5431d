/**
 * One shared suite run against both engines (as Hono runs one suite against every router): the
 * shared table of allow/deny cases, the engine contract, and proof that the engines agree.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import type { Obligations } from '../types.js';
import { CedarEngine } from './cedar/engine.js';
import { combineObligations } from './obligations.js';
import { buildRegoBundle, readRegoBundle } from './rego/bundle.js';
import { RegoEngine } from './rego/engine.js';
import { repoRoot, resolveOpa } from './rego/opa.js';
import { caseInput, POLICY_CASES } from './testing/cases.js';
import type { PolicyEngine } from './types.js';

const root = repoRoot() as string;
const regoDir = join(root, 'policies', 'rego');
const cedarDir = join(root, 'policies', 'cedar');

const factories: Record<string, () => Promise<PolicyEngine>> = {
  // As the gateway loads it: sent only what the policies read, answers memoised.
  rego: async () => {
    const { tarball, reads } = await buildRegoBundle(resolveOpa(), regoDir);
    return RegoEngine.fromBundle(readRegoBundle(tarball, regoDir), regoDir, reads);
  },
  cedar: () => CedarEngine.load(cedarDir),
};

for (const [name, make] of Object.entries(factories)) {
  describe(`${name} engine (shared suite)`, () => {
    let engine: PolicyEngine;
    before(async () => {
      engine = await make();
    });
    after(() => engine.close());

    it('has a sha256 revision', () => {
      assert.match(engine.revision, /^sha256:[0-9a-f]{64}$/);
      assert.equal(engine.name, name);
    });

    for (const c of POLICY_CASES) {
      it(`${c.expect.allow ? 'allows' : 'denies'}: ${c.name}`, () => {
        const r = engine.evaluate(caseInput(c));
        assert.equal(r.allow, c.expect.allow);
        assert.deepEqual(r.reasons.map((x) => x.id).sort(), [...c.expect.ids].sort());
        for (const reason of r.reasons) {
          assert.equal(reason.engine, name);
          assert.ok(reason.message.length > 0);
        }
        if (c.expect.allow) {
          // Each engine states the same obligations in its own way (Rego object, Cedar annotations).
          const { reach: _reach, ...ob } = combineObligations(r.obligations) as Obligations;
          assert.deepEqual(ob, c.expect.obligations ?? {});
        }
      });
    }

    it('never repeats arguments in reasons', () => {
      const c = POLICY_CASES.find((x) => x.name === 'support reads /eng');
      assert.ok(c);
      const r = engine.evaluate(caseInput(c));
      for (const reason of r.reasons) assert.ok(!reason.message.includes('design.md'));
    });

    it('throws once closed (the combiner turns that into a deny)', async () => {
      const e = await make();
      e.close();
      assert.throws(() => e.evaluate(caseInput(POLICY_CASES[0]!)));
    });

    it('decides in tens of microseconds', () => {
      const input = caseInput(POLICY_CASES[0]!);
      for (let i = 0; i < 200; i++) engine.evaluate(input);
      const n = 2000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) engine.evaluate(input);
      const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
      // A bound that holds on a loaded 2-core CI machine and still rules out anything that
      // re-parses policies or spawns a process per decision (milliseconds). Typical figures
      // are in the README / report; this is a guard, not the benchmark.
      assert.ok(us < 2000, `${name} took ${us.toFixed(1)} µs per decision`);
    });
  });
}

describe('engines agree', () => {
  it('on every case of the shared table', async () => {
    const rego = await factories.rego!();
    const cedar = await factories.cedar!();
    try {
      for (const c of POLICY_CASES) {
        const input = caseInput(c);
        const a = rego.evaluate(input);
        const b = cedar.evaluate(input);
        assert.equal(a.allow, b.allow, c.name);
        assert.deepEqual(a.reasons.map((r) => r.id).sort(), b.reasons.map((r) => r.id).sort(), c.name);
      }
    } finally {
      rego.close();
      cedar.close();
    }
  });
});
