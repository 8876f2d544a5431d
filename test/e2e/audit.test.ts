/**
 * The audit trail, end to end: a real gateway process, real services (the echo fixture and a spy
 * service that writes down its per-call credential), real SDK v2 clients, the real
 * `micro-mcp audit verify` CLI. Proves: what each call leaves on disk and when, that verify
 * catches tampering across rotated files, that kill -9 under load leaves a verifiable chain with a
 * decision record for every call the service saw, that SIGTERM drains, and that no token, key or
 * credential appears in any output.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InsufficientScopeError, ProtocolError, type Client } from '@modelcontextprotocol/client';
import { digest, sha256 } from '../../src/audit/canonical.js';
import { auditFiles, auditText, copyDir, readRecords, secretNeedles, SPY_SERVICE, verifyCli, verifyCliAsync, type Line } from '../helpers/audit.js';
import { connect, echoService, eventually, rawPost, startGateway, type Gateway, type TokenClaims } from '../helpers/harness.js';
import { fileLine, fileText, whenChanged } from '../helpers/watch.js';

const text = (r: { content?: unknown }) => (r.content as Array<{ text?: string }>)[0]?.text ?? '';
const uniq = (p: string) => `${p}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;

// ---- what the last test scans: every secret this run handled, every text this run produced ----
const secrets = new Set<string>();
const haystacks: Array<() => string> = [];
const diag: string[] = [];
/** Test diagnostics go through here, so the secret scan covers them too. */
const note = (s: string): string => {
  diag.push(s);
  return s;
};
haystacks.push(() => diag.join('\n'));
const tempDirs: string[] = [];
const tmp = (p: string) => {
  const d = mkdtempSync(path.join(tmpdir(), p));
  tempDirs.push(d);
  return d;
};
const gateways: Gateway[] = [];

/** Starts a gateway whose directory outlives it (audit files are checked after stop/kill). */
async function gateway(config: Record<string, unknown>, dir: string): Promise<Gateway> {
  const gw = await startGateway(config, { dir });
  gateways.push(gw);
  haystacks.push(() => gw.output());
  haystacks.push(() => auditText(path.join(dir, 'audit')));
  // Every token the test mints is a secret that must appear nowhere.
  const mint = gw.token;
  gw.token = async (c?: Partial<TokenClaims>) => {
    const t = await mint(c);
    secrets.add(t);
    return t;
  };
  return gw;
}

/** The private dev signing key material (`d`) of a gateway's key dir. */
function devKeySecrets(dir: string): string[] {
  const keys = path.join(dir, 'keys');
  return readdirSync(keys)
    .filter((n) => n.includes('private'))
    .map((n) => (JSON.parse(readFileSync(path.join(keys, n), 'utf8')) as { d: string }).d);
}

const byDigest = (recs: Line[], args: Record<string, unknown>, kind = 'decision') =>
  recs.filter((l) => l.rec.kind === kind && l.rec.arguments_digest === digest(args));
const byDecision = (recs: Line[], id: string) => recs.filter((l) => l.rec.decision_id === id);
/**
 * The records of `auditDir` once every call made with one of `argsList` has its decision and its
 * outcome on disk (the outcome is written after the agent has its answer).
 */
function settled(auditDir: string, argsList: Array<Record<string, unknown>>): Promise<Line[]> {
  return whenChanged(auditDir, () => {
    const all = readRecords(auditDir);
    const done = argsList.every((args) => {
      const d = byDigest(all, args)[0];
      return d !== undefined && byDecision(all, d.rec.decision_id!).some((l) => l.rec.kind === 'outcome');
    });
    return done && all;
  });
}

/** True once `pid` has exited (gone, or a zombie nobody has reaped yet). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); // "pid (comm) STATE ..."
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
const markerLines = (marker: string) => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n') : []);

/**
 * Proves that a refused call (tagged `refusedTag`) never reached the echo service: an allowed call
 * sent after the refusal reaches the same service process over the same ordered pipe, so once its
 * "started" line is in the marker file, a forwarded refused call's line would be there before it.
 */
async function neverReachedEcho(client: Client, marker: string, auditDir: string, refusedTag: string): Promise<void> {
  const later = { tag: uniq('later'), ms: 10 };
  assert.equal(text(await client.callTool({ name: 'echo.slow', arguments: later })), 'finished');
  await settled(auditDir, [later]); // leaves no record still to come for the next test
  const lines = markerLines(marker);
  assert.ok(lines.includes(`started ${later.tag}`), 'the later, allowed call reached the service');
  assert.ok(!lines.includes(`started ${refusedTag}`), 'the refused call never reached the service');
}

after(async () => {
  for (const gw of gateways) if (gw.proc.exitCode === null && gw.proc.signalCode === null) await gw.stop('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

describe('audit records through the real gateway', () => {
  let gw: Gateway;
  let dir: string;
  let auditDir: string;
  let marker: string;
  let credFile: string;
  let client: Client;
  const scopes = ['echo:call', 'slowecho:call', 'spy:call'];

  before(async () => {
    dir = tmp('micro-mcp-audit-e2e-');
    auditDir = path.join(dir, 'audit');
    marker = path.join(dir, 'marker.log');
    credFile = path.join(dir, 'credentials.log');
    gw = await gateway(
      {
        // Small grace so that the SIGTERM test's long call is cut off (and recorded) quickly.
        server: { shutdown_grace_ms: 1500 },
        // The default 50 ms decision budget turns into engine_error denials on a loaded CI box.
        policy: { decision_timeout_ms: 5000 },
        services: {
          echo: echoService({}, marker),
          slowecho: echoService({ call_timeout_ms: 400 }, marker, 'echo://slowecho/info'),
          spy: { transport: 'stdio', command: 'node', args: [SPY_SERVICE, '--out', credFile], sandbox: { mode: 'none' } },
        },
        // Small files so that a handful of calls spans several rotated files; keep them all.
        audit: { rotate_bytes: 4096, keep_files: 0 },
      },
      dir,
    );
    client = await connect(gw, 'legacy', { token: await gw.token({ scopes }) });
  });
  after(async () => {
    await client?.close().catch(() => undefined);
  });

  test('an allowed call: one decision record before one linked outcome record', async () => {
    const args = { text: uniq('allowed') };
    const r = await client.callTool({ name: 'echo.echo', arguments: args });
    assert.equal(text(r), args.text);
    const recs = await settled(auditDir, [args]);
    const decisions = byDigest(recs, args);
    assert.equal(decisions.length, 1, note('exactly one decision record for the call'));
    const d = decisions[0]!.rec as Record<string, any> & Line['rec'];
    assert.equal(d.result.allow, true);
    assert.ok(d.result.reasons.length > 0);
    for (const reason of d.result.reasons) {
      assert.ok(['rego', 'cedar'].includes(reason.engine), note(`reason engine ${reason.engine}`));
      assert.equal(typeof reason.id, 'string');
    }
    assert.deepEqual(new Set(d.result.reasons.map((x: { engine: string }) => x.engine)), new Set(['rego', 'cedar']), 'both engines cite their rule');
    assert.ok(d.result.reasons.every((x: { id: string }) => x.id === 'service_call_scope'));
    assert.match(d.bundles.policy.revision, /^\S{8,}$/);
    assert.equal(d.arguments_digest, digest(args));
    assert.equal(d.input, undefined, 'arguments are not logged by default');
    assert.ok(!decisions[0]!.text.includes(args.text), 'the argument value is not in the record');
    assert.equal(d.principal.id, 'alice');
    assert.equal(d.principal.type, 'user');
    assert.equal(typeof d.principal.issuer, 'string');
    assert.deepEqual(d.principal.groups, ['eng']);
    assert.equal(d.purpose, 'e2e-tests');
    assert.deepEqual(d.scopes, scopes);
    assert.equal(d.method, 'tools/call');
    assert.equal(d.tool, 'echo.echo');
    assert.equal(d.service, 'echo');
    assert.match(d.tool_definition_hash, /^sha256:[0-9a-f]{64}$/);
    assert.equal(typeof d.request_id, 'string');
    assert.ok(d.request_id.length > 0);
    const sid = (client as unknown as { transport?: { sessionId?: string } }).transport?.sessionId;
    assert.ok(sid, '2025-era client has a session');
    assert.equal(d.session_id, sid);
    assert.equal(d.requested_by, '127.0.0.1');
    assert.match(String(d.decision_id), /^[0-9a-f-]{36}$/);
    assert.equal(typeof d.metrics.timer_policy_eval_ns, 'number');

    const linked = byDecision(recs, d.decision_id!);
    assert.equal(linked.length, 2, note(`decision + outcome only: ${linked.map((l) => l.rec.kind).join(',')}`));
    const o = linked.find((l) => l.rec.kind === 'outcome')!.rec as Record<string, any> & Line['rec'];
    assert.ok(o.seq > d.seq, 'the outcome comes after its decision in the chain');
    assert.equal(o.outcome, 'ok');
    assert.equal(o.error, undefined);
    assert.equal(o.tool, 'echo.echo');
    assert.equal(o.principal.id, 'alice');
    assert.equal(o.request_id, d.request_id);
    assert.ok(o.metrics.timer_service_ns > 0, 'service latency recorded');
    assert.ok(o.metrics.timer_total_ns >= o.metrics.timer_service_ns, 'total covers the service time');
    assert.equal(typeof o.metrics.timer_policy_eval_ns, 'number');
    assert.ok(o.response_bytes > 0);
    assert.equal(o.output, undefined, 'results are not logged by default');
  });

  test('a denied call: one decision record (deny, reasons), no outcome, never forwarded', async () => {
    // No purpose: echo.slow has no annotations, so it counts as open-world and needs one (purpose_required).
    const denied = await connect(gw, 'modern', { token: await gw.token({ scopes, purpose: '' }) });
    const args = { tag: uniq('denied'), ms: 10 };
    let err: ProtocolError | undefined;
    await assert.rejects(denied.callTool({ name: 'echo.slow', arguments: args }), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, note(String(e)));
      err = e;
      return true;
    });
    await denied.close();
    assert.equal(err!.code, -32003);
    assert.equal(err!.message, 'denied by policy: purpose_required');
    const recs = readRecords(auditDir);
    const decisions = byDigest(recs, args);
    assert.equal(decisions.length, 1);
    const d = decisions[0]!.rec as Record<string, any> & Line['rec'];
    assert.equal(d.result.allow, false);
    assert.deepEqual(new Set(d.result.reasons.map((x: { engine: string }) => x.engine)), new Set(['rego', 'cedar']));
    assert.ok(d.result.reasons.every((x: { id: string; message: string }) => x.id === 'purpose_required' && x.message.length > 0));
    assert.equal(d.purpose, null);
    assert.equal(d.session_id, null, '2026-era calls are stateless');
    // The agent gets what the record holds: it can quote the decision id and the deciding rules.
    assert.deepEqual(err!.data, {
      code: 'ERR_POLICY_DENIED',
      decision_id: d.decision_id,
      reasons: d.result.reasons,
      policy_revision: d.bundles.policy.revision,
    });
    assert.deepEqual(
      byDecision(recs, d.decision_id!).map((l) => l.rec.kind),
      ['decision'],
      'no outcome for a denied call',
    );
    await neverReachedEcho(client, marker, auditDir, args.tag);
  });

  // Only more scope would allow it, so the edge refuses it with a 403 step-up before anything is
  // decided (src/http/app.ts, Gateway.stepUpScopes): an auth_failure event, never a decision record.
  test('a call refused for want of scope: 403 step-up, an event naming who and which tool, never forwarded', async () => {
    const args = { tag: uniq('noscope'), ms: 10 };
    const noScope = await connect(gw, 'modern', { token: await gw.token({ scopes: ['spy:call'] }) });
    const before = readRecords(auditDir).length;
    await assert.rejects(noScope.callTool({ name: 'echo.slow', arguments: args }), (e: unknown) => {
      assert.ok(e instanceof InsufficientScopeError, note(String(e)));
      assert.equal(e.requiredScope, 'echo:call');
      return true;
    });
    await noScope.close();
    // Written before the 403 went out, so it is on disk now.
    const events = readRecords(auditDir)
      .slice(before)
      .filter((l) => l.rec.kind === 'event' && (l.rec as Record<string, any>).error?.code === 'ERR_INSUFFICIENT_SCOPE');
    assert.equal(events.length, 1, note(`one step-up event: ${events.map((l) => l.text).join('\n')}`));
    const e = events[0]!.rec as Record<string, any>;
    assert.equal(e.type, 'auth_failure');
    assert.equal(e.error.message, 'this call needs more scope');
    assert.equal(e.principal.id, 'alice');
    assert.equal(e.method, 'tools/call');
    assert.equal(e.tool, 'echo.slow');
    assert.equal(e.service, 'echo');
    assert.match(e.request_id, /^[0-9a-f-]{36}$/);
    await neverReachedEcho(client, marker, auditDir, args.tag);
    assert.deepEqual(byDigest(readRecords(auditDir), args), [], 'nothing was decided for it');
  });

  test('a forged or garbled token: auth_failure event with the code, no token material', async () => {
    const good = await gw.token({ scopes });
    const [h, p, s] = good.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'mallory', groups: ['admin'] })).toString('base64url')}.${s}`;
    const garbled = `${h}.${p}.${s.slice(0, -6)}AAAAAA`;
    for (const t of [forged, garbled]) secrets.add(t);
    for (const bad of [forged, garbled]) {
      const res = await rawPost(gw, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }), { authorization: `Bearer ${bad}` });
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
      const rid = res.headers.get('x-request-id') ?? '';
      assert.ok(rid, 'the edge names the request');
      // Written before the 401 went out, so it is on disk now.
      const found = readRecords(auditDir).filter((l) => l.rec.kind === 'event' && l.rec.type === 'auth_failure' && l.rec.request_id === rid);
      assert.equal(found.length, 1, 'one auth_failure event for the request');
      const ev = found[0]!;
      const e = ev.rec as Record<string, any> & Line['rec'];
      assert.match(e.error.code, /^ERR_AUTH_[A-Z_]+$/);
      assert.equal(typeof e.error.message, 'string');
      assert.equal(e.principal, undefined, 'no principal was established');
      for (const n of [...secretNeedles(bad), p]) assert.ok(!ev.text.includes(n), 'no token material in the event');
    }
  });

  test('tool error, service error and timeout produce their outcome values', async () => {
    const cases: Array<{ name: string; args: Record<string, unknown>; outcome: string; code?: RegExp; rejects: boolean }> = [
      { name: 'spy.keep', args: { n: uniq('keep') }, outcome: 'ok', rejects: false },
      { name: 'spy.fail', args: { n: uniq('fail') }, outcome: 'tool_error', rejects: false },
      { name: 'spy.boom', args: { n: uniq('boom') }, outcome: 'service_error', code: /^(JSONRPC_-?\d+|ERR_SERVICE_[A-Z_]+)$/, rejects: true },
      { name: 'slowecho.slow', args: { tag: uniq('timeout'), ms: 5000 }, outcome: 'timeout', code: /^ERR_SERVICE_TIMEOUT$/, rejects: true },
    ];
    for (const c of cases) {
      const call = client.callTool({ name: c.name, arguments: c.args });
      if (c.rejects) await assert.rejects(call);
      else {
        const r = await call;
        assert.equal(r.isError === true, c.outcome === 'tool_error', note(`${c.name} isError`));
      }
      const recs = await settled(auditDir, [c.args]);
      const d = byDigest(recs, c.args)[0]!;
      const linked = byDecision(recs, d.rec.decision_id!);
      const o = linked.find((l) => l.rec.kind === 'outcome')!.rec as Record<string, any> & Line['rec'];
      assert.equal(o.outcome, c.outcome, note(`${c.name} outcome`));
      if (c.code) assert.match(o.error?.code ?? '', c.code, note(`${c.name} error code`));
      else if (c.outcome === 'ok') assert.equal(o.error, undefined);
    }
    // The spy wrote down the per-call credentials it was given: the secret scan looks for them.
    const creds = readFileSync(credFile, 'utf8').split('\n').filter(Boolean);
    assert.ok(creds.length >= 3, 'the spy saw a credential on every call');
    for (const c of creds) secrets.add(c);
  });

  test('the decision record is on disk before the service runs', async () => {
    // The call runs until cancelled, so "no outcome yet" cannot race its end.
    const args = { tag: uniq('order'), ms: 60_000 };
    const ac = new AbortController();
    const call = client.callTool({ name: 'echo.slow', arguments: args }, { signal: ac.signal });
    await fileLine(marker, `started ${args.tag}`);
    const atStart = readRecords(auditDir);
    const d = byDigest(atStart, args);
    assert.equal(d.length, 1, 'the decision record was already written when the service started');
    assert.equal((d[0]!.rec as Record<string, any>).result.allow, true);
    assert.deepEqual(
      byDecision(atStart, d[0]!.rec.decision_id!).map((l) => l.rec.kind),
      ['decision'],
      'no outcome while the call runs',
    );
    ac.abort();
    await assert.rejects(call);
    await fileLine(marker, `cancelled ${args.tag}`);
    const o = byDecision(await settled(auditDir, [args]), d[0]!.rec.decision_id!).find((l) => l.rec.kind === 'outcome')!;
    assert.equal(o.rec.outcome, 'cancelled');
  });

  test('rotation keeps one chain: verify passes over all rotated files and prints the count', async () => {
    // Fill a few more files; an outcome is written after the answer, so wait for the last ones.
    const fills = Array.from({ length: 12 }, (_, i) => ({ text: uniq(`fill${i}`) }));
    for (const args of fills) await client.callTool({ name: 'echo.echo', arguments: args });
    await settled(auditDir, fills);
    const files = auditFiles(auditDir);
    assert.ok(files.length >= 4, note(`several rotated files (${files.length})`));
    for (const f of files) assert.ok(readFileSync(f).length <= 4096, 'each file stays within rotate_bytes');
    const recs = readRecords(auditDir);
    const r = verifyCli(auditDir);
    note(r.out);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`^verified ${recs.length} records in ${files.length} files \\(seq 1\\.\\.${recs.at(-1)!.rec.seq}, from genesis\\)`, 'm'));
    // Files in any order (here: newest first) give the same answer.
    const rev = verifyCli(...[...files].reverse());
    assert.equal(rev.code, 0, rev.out);
    assert.match(rev.out, new RegExp(`verified ${recs.length} records`));
    // Nothing was rotated out (keep_files: 0), so the strict check holds too.
    const strict = verifyCli('--genesis', auditDir);
    assert.equal(strict.code, 0, strict.out);
  });

  test('SIGTERM drains in-flight calls; every allowed decision has exactly one outcome', async () => {
    const short = [0, 1, 2].map((i) => ({ tag: uniq(`term${i}`), ms: 700 }));
    const long = { tag: uniq('termlong'), ms: 60_000 };
    // Settled into values at once, so an early failure is reported by the assertions below, not as
    // an unhandled rejection.
    const calls = short.map((a) =>
      client.callTool({ name: 'echo.slow', arguments: a }).then(
        (r) => r,
        (e: Error) => e,
      ),
    );
    // Not awaited: the answer to a call cut off by the shutdown is not what this test is about
    // (the SDK client would wait out its own request timeout); its audit record is.
    void client.callTool({ name: 'echo.slow', arguments: long }, { timeout: 10_000 }).catch(() => undefined);
    await fileText(marker, (t) => [...short, long].every((a) => t.includes(`started ${a.tag}\n`)));
    const code = await gw.stop('SIGTERM');
    assert.equal(code, 0, 'clean exit after the drain');
    for (const c of calls) {
      const r = await c;
      assert.ok(!(r instanceof Error), `an in-flight call failed: ${String(r)}`);
      assert.equal(text(r), 'finished', 'in-flight calls completed during the drain');
    }
    assert.match(gw.output(), /SIGTERM: draining in-flight calls/);

    const recs = readRecords(auditDir);
    const allowed = recs.filter((l) => l.rec.kind === 'decision' && (l.rec as Record<string, any>).result.allow === true);
    assert.ok(allowed.length >= 20);
    for (const d of allowed) {
      const outs = recs.filter((l) => l.rec.kind === 'outcome' && l.rec.decision_id === d.rec.decision_id);
      assert.equal(outs.length, 1, note(`decision seq ${d.rec.seq} (${String(d.rec.tool)}) has exactly one outcome`));
    }
    for (const a of short) assert.equal(byDecision(recs, byDigest(recs, a)[0]!.rec.decision_id!).find((l) => l.rec.kind === 'outcome')!.rec.outcome, 'ok');
    const longOut = byDecision(recs, byDigest(recs, long)[0]!.rec.decision_id!).find((l) => l.rec.kind === 'outcome')!.rec as Record<string, any>;
    assert.equal(longOut.outcome, 'cancelled', 'a call cut off by the shutdown is recorded as cancelled');
    const r = verifyCli(auditDir);
    note(r.out);
    assert.equal(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /incomplete last line/, 'a graceful stop leaves no torn write');
  });

  describe('tampering is detected and the first bad record named', () => {
    let victim: string; // a middle rotated file with at least 3 records
    let lines: string[];
    const seqAt = (i: number) => (JSON.parse(lines[i]!) as { seq: number }).seq;
    const flip = (pos: number) => (ls: string[]) => {
      const b = Buffer.from(ls[1]!);
      b[pos] = b[pos]! ^ 0x01;
      ls[1] = b.toString('latin1');
      return ls;
    };
    /** Byte offsets in the victim's 2nd line: the opening, a year digit (still valid JSON), the middle, prev_hash, hash. */
    let flips: number[] = [];
    const runs = new Map<string, Promise<{ code: number | null; out: string }>>();
    /** Copies the audit dir, lets `mutate` rewrite the victim's lines, runs the real verify on the copy. */
    const tampered = (mutate: (ls: string[]) => string[], extra?: (copy: string) => void, flags: string[] = []) => {
      const copy = copyDir(auditDir);
      tempDirs.push(copy);
      writeFileSync(
        path.join(copy, victim),
        mutate([...lines])
          .map((l) => `${l}\n`)
          .join(''),
      );
      extra?.(copy);
      return verifyCliAsync(...flags, copy).then((r) => (note(r.out), r));
    };
    const failedAt = (out: string, line: number, seq?: number) => {
      const m = /audit verify FAILED at (.+):(\d+)(?: \(seq (\d+)\))?: /.exec(out);
      assert.ok(m, out);
      assert.equal(path.basename(m[1]!), victim, out);
      assert.equal(Number(m[2]), line, out);
      if (seq !== undefined) assert.equal(Number(m[3]), seq, out);
    };

    before(() => {
      const files = auditFiles(auditDir);
      victim = path.basename(files.slice(1, -1).find((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean).length >= 3)!);
      lines = readFileSync(path.join(auditDir, victim), 'utf8').split('\n').filter(Boolean);
      const l = lines[1]!;
      flips = [1, l.indexOf('"timestamp":"') + '"timestamp":"'.length + 3, Math.floor(l.length / 2), l.indexOf('"prev_hash"') + 20, l.length - 10];
      // An attacker recomputes the hash of a made-up record that links to its predecessor.
      const prev = JSON.parse(lines[0]!) as Record<string, unknown>;
      const fake: Record<string, unknown> = {
        ...(JSON.parse(lines[1]!) as Record<string, unknown>),
        seq: (prev.seq as number) + 1,
        prev_hash: prev.hash,
        decision_id: '00000000-0000-0000-0000-000000000000',
      };
      delete fake.hash;
      const body = canonicalLine(fake);
      const forgedLine = `${body.slice(0, -1)},"hash":"${sha256(body)}"}`;
      // Each verification is a separate CLI process; start them all at once (they only read).
      runs.set(
        'none',
        tampered((ls) => ls),
      );
      for (const pos of flips) runs.set(`flip${pos}`, tampered(flip(pos)));
      runs.set(
        'drop',
        tampered((ls) => (ls.splice(1, 1), ls)),
      );
      runs.set(
        'swap',
        tampered((ls) => (([ls[1], ls[2]] = [ls[2]!, ls[1]!]), ls)),
      );
      runs.set(
        'replay',
        tampered((ls) => (ls.splice(2, 0, ls[0]!), ls)),
      );
      runs.set(
        'forged',
        tampered((ls) => (ls.splice(1, 0, forgedLine), ls)),
      );
      runs.set(
        'file',
        tampered(
          (ls) => ls,
          (copy) => unlinkSync(path.join(copy, victim)),
        ),
      );
      const oldest = path.basename(files[0]!);
      runs.set(
        'oldest',
        tampered(
          (ls) => ls,
          (copy) => unlinkSync(path.join(copy, oldest)),
        ),
      );
      runs.set(
        'oldest-genesis',
        tampered(
          (ls) => ls,
          (copy) => unlinkSync(path.join(copy, oldest)),
          ['--genesis'],
        ),
      );
    });

    test('the untouched copy verifies (the mutations below are what fails)', async () => {
      const r = await runs.get('none')!;
      assert.equal(r.code, 0, r.out);
    });

    test('flipping any single byte of a record', async () => {
      for (const pos of flips) {
        const r = await runs.get(`flip${pos}`)!;
        assert.equal(r.code, 1, note(`byte ${pos}: ${r.out}`));
        failedAt(r.out, 2, pos === flips[1] ? seqAt(1) : undefined);
      }
    });

    test('dropping a record', async () => {
      const r = await runs.get('drop')!;
      assert.equal(r.code, 1, r.out);
      failedAt(r.out, 2, seqAt(2));
      assert.match(r.out, /1 record\(s\) missing/);
    });

    test('swapping two records', async () => {
      const r = await runs.get('swap')!;
      assert.equal(r.code, 1, r.out);
      failedAt(r.out, 2, seqAt(2));
    });

    test('inserting a copy of a record (replay)', async () => {
      const r = await runs.get('replay')!;
      assert.equal(r.code, 1, r.out);
      failedAt(r.out, 3, seqAt(0));
    });

    test('inserting a forged record whose own hash is right', async () => {
      // Without a secret the forged line itself checks out; the record after it no longer fits,
      // and that is where the chain breaks.
      const r = await runs.get('forged')!;
      assert.equal(r.code, 1, r.out);
      failedAt(r.out, 3, seqAt(1));
    });

    test('removing a whole rotated file', async () => {
      const r = await runs.get('file')!;
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /record\(s\) missing/);
    });

    test('removing the oldest file is caught with --genesis (and only with it, as documented)', async () => {
      const plain = await runs.get('oldest')!;
      assert.equal(plain.code, 0, plain.out);
      assert.doesNotMatch(plain.out, /from genesis/);
      const strict = await runs.get('oldest-genesis')!;
      assert.equal(strict.code, 1, strict.out);
      assert.match(strict.out, /FAILED at .+:1 \(seq \d+\): chain does not start at genesis/);
    });
  });
});

/** Canonical JSON as the gateway writes it (sorted keys, no whitespace). */
function canonicalLine(v: unknown): string {
  const sort = (x: unknown): unknown =>
    Array.isArray(x)
      ? x.map(sort)
      : x && typeof x === 'object'
        ? Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, sort((x as Record<string, unknown>)[k])]),
          )
        : x;
  return JSON.stringify(sort(v));
}

describe('kill -9 under load', () => {
  test('every complete record verifies and every call the service saw has its decision record', async () => {
    const dir = tmp('micro-mcp-audit-kill-');
    const auditDir = path.join(dir, 'audit');
    const marker = path.join(dir, 'marker.log');
    const credFile = path.join(dir, 'credentials.log');
    const config = {
      services: {
        echo: echoService({}, marker),
        spy: { transport: 'stdio', command: 'node', args: [SPY_SERVICE, '--out', credFile], sandbox: { mode: 'none' } },
      },
      policy: { decision_timeout_ms: 5000 },
      audit: { rotate_bytes: 16_384, keep_files: 0, log_arguments: true, redact: { keys: ['pin'] } },
    };
    const gw = await gateway(config, dir);
    const token = await gw.token({ scopes: ['echo:call', 'spy:call'] });

    // With log_arguments on, secret-looking arguments are censored in the record.
    const apiKey = `sk_live_${uniq('k').replace(/-/g, '')}abcdefghijklmnop`;
    const pin = uniq('pin');
    const bearer = `Bearer ${uniq('tok').replace(/-/g, '')}abcdefghijklmnopqrstuvwxyz`;
    for (const s of [apiKey, pin, bearer]) secrets.add(s);
    const first = await connect(gw, 'modern', { token });
    const args = { note: 'visible', api_key: apiKey, pin, header: bearer };
    assert.equal(text(await first.callTool({ name: 'spy.keep', arguments: args })), 'kept');
    // The echo service outlives the gateway's SIGKILL for a moment; the test waits for its exit.
    const echoPid = ((await first.callTool({ name: 'echo.env', arguments: {} })).structuredContent as { pid: number }).pid;
    await first.close();
    const rec = byDigest(readRecords(auditDir), args)[0]!.rec as Record<string, any>;
    assert.equal(rec.input.arguments.note, 'visible', 'arguments are logged when configured');
    for (const k of ['api_key', 'pin']) assert.equal(rec.input.arguments[k], '[REDACTED]', note(`${k} censored`));
    // A credential-looking value is censored in place (the scheme may stay).
    assert.match(rec.input.arguments.header, /^(Bearer )?\[REDACTED\]$/);
    assert.ok(rec.masked.includes('/input/arguments/api_key') && rec.masked.includes('/input/arguments/pin'), note(`masked ${JSON.stringify(rec.masked)}`));

    // Load: 6 clients x 6 loops of slow calls, each tagged; SIGKILL once the service has seen 120.
    const clients = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => connect(gw, i % 2 ? 'legacy' : 'modern', { token })));
    let stop = false;
    let n = 0;
    const sent: Array<Record<string, unknown>> = [];
    const loops = clients.flatMap((c, ci) =>
      [0, 1, 2, 3, 4, 5].map(async (li) => {
        while (!stop) {
          const a = { tag: `k9-${ci}-${li}-${n++}`, ms: 5 };
          sent.push(a);
          try {
            await c.callTool({ name: 'echo.slow', arguments: a });
          } catch {
            return; // the gateway is gone
          }
        }
      }),
    );
    const started = (t: string) => t.split('\n').filter((l) => l.startsWith('started k9-'));
    await fileText(marker, (t) => started(t).length >= 120, 20_000);
    const exited = new Promise((r) => gw.proc.once('exit', r));
    gw.proc.kill('SIGKILL');
    await exited;
    stop = true;
    // Closing the clients fails their pending calls at once (an SDK client would otherwise wait out its request timeout).
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(loops);
    // Calls already in the orphaned service's stdin pipe may still run (and be marked) after the
    // kill; once the process is gone, the marker file is final. Its exit is the event; /proc is
    // only where a process that is not our child can be seen to end.
    await eventually(() => processGone(echoPid), 20_000);
    const seen = () => started(markerLines(marker).join('\n'));

    const r = verifyCli(auditDir);
    note(r.out);
    assert.equal(r.code, 0, r.out);
    const recs = readRecords(auditDir);
    const m = /verified (\d+) records/.exec(r.out);
    assert.equal(Number(m?.[1]), recs.length, 'verify checked every complete record');
    const digests = new Set(
      recs.filter((l) => l.rec.kind === 'decision' && (l.rec as Record<string, any>).result.allow === true).map((l) => l.rec.arguments_digest),
    );
    const tags = seen().map((l) => l.slice('started '.length));
    assert.ok(tags.length >= 120);
    const byTag = new Map(sent.map((a) => [a.tag as string, a]));
    const missing = tags.filter((t) => !digests.has(digest(byTag.get(t) ?? { tag: t, ms: 5 })));
    assert.deepEqual(missing, [], note(`calls the service ran without a decision record: ${missing.length} of ${tags.length}`));
    assert.ok(auditFiles(auditDir).length >= 2, 'the load rotated files');

    // The next start continues the same chain (cutting a torn last line, if the kill left one).
    const again = await gateway(config, dir);
    const c = await connect(again, 'modern', { token: await again.token({ scopes: ['echo:call'] }) });
    assert.equal(text(await c.callTool({ name: 'echo.echo', arguments: { text: 'after' } })), 'after');
    await c.close();
    assert.equal(await again.stop('SIGTERM'), 0);
    const r2 = verifyCli(auditDir);
    note(r2.out);
    assert.equal(r2.code, 0, r2.out);
    assert.match(r2.out, /from genesis/);
    assert.doesNotMatch(r2.out, /incomplete last line/, 'the restart repaired any torn write');
    for (const c2 of readFileSync(credFile, 'utf8').split('\n').filter(Boolean)) secrets.add(c2);
    for (const d of devKeySecrets(dir)) secrets.add(d);
  });
});

describe('no secret anywhere', () => {
  test('tokens, dev key material, service credentials and secret arguments appear in no output', () => {
    const keys = gateways.flatMap((gw) => devKeySecrets(gw.dir));
    assert.ok(keys.length >= 2 && keys.every((k) => k.length >= 40), 'the dev private keys were found');
    for (const k of keys) secrets.add(k);
    const needles = [...secrets].flatMap(secretNeedles);
    // Enough of each kind that the scan means something.
    assert.ok([...secrets].filter((s) => s.split('.').length === 3).length >= 6, 'tokens and credentials collected');
    assert.ok(needles.length >= 15);
    const hay = haystacks.map((h) => h());
    assert.ok(hay.join('').length > 20_000, 'the haystack holds the run');
    for (const n of needles) {
      for (const h of hay) assert.ok(!h.includes(n), 'a secret leaked into the gateway output, the audit files or the diagnostics');
    }
  });
});
