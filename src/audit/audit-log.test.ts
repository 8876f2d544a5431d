import assert from 'node:assert/strict';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsImport from 'ajv-formats';
import { isGatewayError } from '../errors.js';
import { openAuditLog } from './audit-log.js';
import { digest } from './canonical.js';
import { auditOptionsFromConfig } from './config.js';
import { GENESIS_HASH } from './records.js';
import { OWED_SYNC_MS } from './sink.js';
import { verifyAuditFiles } from './verify.js';
import { ALL_SECRETS, SECRET_JWT, decisionOf, policyInput, tmpDir } from './testdata/fixtures.js';

const root = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../../' : '../../../', import.meta.url));
const schema = (name: string): object => JSON.parse(readFileSync(path.join(root, 'schemas', name), 'utf8')) as object;
// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsImport as unknown as { default?: unknown }).default ?? addFormatsImport) as (a: Ajv2020) => Ajv2020;
const ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }));
const validateRecord = ajv.compile(schema('audit-event.schema.json'));
const validateConfig = ajv.compile(schema('config-audit.schema.json'));

const readRecords = (file: string): Array<Record<string, unknown>> =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const isAuditUnavailable = (e: unknown): boolean => isGatewayError(e) && e.code === 'ERR_AUDIT_UNAVAILABLE';

test('allowed call: a decision then a linked outcome, exactly; a denial: one decision; an auth failure: one event', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, instanceId: 'gw-1', version: '0.1.0' });
  const input = policyInput();
  const d = await log.decision({ input, decision: decisionOf(true), token_id: 'jti-1' });
  assert.equal(readFileSync(file, 'utf8').split('\n').length - 1, 1, 'the decision is in the file when decision() resolves');
  await log.outcome({
    decision_id: d.decision_id,
    outcome: 'ok',
    service_us: 250,
    response_bytes: 42,
    result: { content: [{ type: 'text', text: SECRET_JWT }] },
  });
  const denied = await log.decision({ input: policyInput({ scopes: [] }), decision: decisionOf(false) });
  await log.event({
    type: 'auth_failure',
    request_id: 'req-9',
    requested_by: '127.0.0.1',
    error: { code: 'ERR_AUTH_EXPIRED', message: `token expired: Bearer ${SECRET_JWT}` },
  });
  assert.equal(log.stats.inflight, 0);
  await log.close();

  const recs = readRecords(file);
  assert.deepEqual(
    recs.map((r) => [r.kind, r.seq]),
    [
      ['decision', 1],
      ['outcome', 2],
      ['decision', 3],
      ['event', 4],
    ],
  );
  for (const r of recs) assert.equal(validateRecord(r), true, JSON.stringify(validateRecord.errors));
  const [dec, out, deny, ev] = recs as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  assert.equal(dec.prev_hash, GENESIS_HASH);
  const { timestamp: _ts, hash: _h, ...stable } = dec;
  void _ts, _h;
  assert.deepEqual(stable, {
    _v: 1,
    kind: 'decision',
    seq: 1,
    prev_hash: GENESIS_HASH,
    labels: { app: 'micro-mcp', id: 'gw-1', version: '0.1.0' },
    decision_id: d.decision_id,
    request_id: 'req-1',
    session_id: 'sess-1',
    requested_by: '127.0.0.1',
    principal: { id: 'alice', type: 'user', issuer: 'https://idp.test', groups: ['dev'], purposes: [], token_id: 'jti-1' },
    client: { id: 'agent-cli' },
    method: 'tools/call',
    tool: 'fs.read',
    service: 'fs',
    tool_definition_hash: `sha256:${'a'.repeat(64)}`,
    tool_annotations: { readOnlyHint: true },
    resource: { path: '/srv/data/report.txt' },
    purpose: 'incident-4711',
    scopes: ['fs:read'],
    result: { allow: true, reasons: [{ engine: 'rego', id: 'fs_read_allowed', message: 'reader may read' }] },
    bundles: { policy: { revision: `sha256:${'b'.repeat(64)}` } },
    metrics: { timer_policy_eval_ns: 17000 },
    arguments_digest: digest(input.arguments),
  });
  assert.equal(out.decision_id, d.decision_id);
  assert.equal(out.outcome, 'ok');
  assert.equal(out.request_id, 'req-1');
  assert.equal(out.tool, 'fs.read');
  assert.equal(out.response_bytes, 42);
  assert.equal(out.output, undefined, 'results are not logged by default');
  const m = out.metrics as Record<string, number>;
  assert.equal(m.timer_service_ns, 250_000);
  assert.equal(m.timer_policy_eval_ns, 17_000);
  assert.ok(m.timer_total_ns! > 0, 'total latency measured from the decision');
  assert.equal(deny.decision_id, denied.decision_id);
  assert.deepEqual(deny.result, { allow: false, reasons: [{ engine: 'rego', id: 'fs_read_requires_scope', message: 'missing scope fs:read' }] });
  assert.equal(ev.type, 'auth_failure');
  assert.deepEqual(ev.error, { code: 'ERR_AUTH_EXPIRED', message: 'token expired: Bearer [REDACTED]' });
  const text = readFileSync(file, 'utf8');
  for (const s of ALL_SECRETS) assert.equal(text.includes(s), false, 'a secret reached the audit file');
  // Arguments are not logged by default: only their digest, and the resource facts decided on (here
  // the canonical path, in `resource`), never the other argument values.
  assert.equal(dec.input, undefined, 'arguments are not logged by default');
  assert.equal(text.includes('contact '), false, 'argument values are not logged by default');
  assert.equal(text.split('/srv/data/report.txt').length - 1, 2, 'the path appears only as the resource fact of the two decisions');
  assert.equal((await verifyAuditFiles([file], { requireGenesis: true })).ok, true);
});

test("an event's service: the caller's when set, else a canonical tool's known service, else none", async (t) => {
  const file = path.join(tmpDir(t), 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'never', services: ['fs', 'mirror'] });
  const probe = (fields: { tool?: string; exposed_name?: string; service?: string }) =>
    log.event({ type: 'probe_refused', request_id: 'req-1', method: 'tools/call', ...fields, error: { code: 'ERR_TEST', message: 'refused' } });
  // Set by the caller (it resolved an alias that looks like another service's name).
  await probe({ tool: 'mirror.echo', exposed_name: 'fs.echo', service: 'mirror' });
  // Canonical name of a configured service: taken from the name.
  await probe({ tool: 'fs.read' });
  // An exposed name or an unknown one: the text before its '.' names no configured service, so none.
  await probe({ tool: 'files.read' });
  await probe({ tool: 'say' });
  await probe({ tool: '.read' });
  await probe({});
  await log.close();
  const recs = readRecords(file);
  for (const r of recs) assert.equal(validateRecord(r), true, JSON.stringify(validateRecord.errors));
  assert.deepEqual(
    recs.map((r) => [r.tool, r.exposed_name, r.service]),
    [
      ['mirror.echo', 'fs.echo', 'mirror'],
      ['fs.read', undefined, 'fs'],
      ['files.read', undefined, undefined],
      ['say', undefined, undefined],
      ['.read', undefined, undefined],
      [undefined, undefined, undefined],
    ],
  );
  // Absent, not null: the record simply has no service member.
  assert.equal('service' in recs[2]!, false);
});

test('without the configured services no service is guessed from a tool name', async (t) => {
  const file = path.join(tmpDir(t), 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'never' });
  await log.event({ type: 'probe_refused', tool: 'fs.read', error: { code: 'ERR_TEST', message: 'refused' } });
  await log.event({ type: 'probe_refused', tool: 'fs.read', service: 'fs', error: { code: 'ERR_TEST', message: 'refused' } });
  await log.close();
  assert.deepEqual(
    readRecords(file).map((r) => r.service),
    [undefined, 'fs'],
  );
});

test('log_arguments / log_results log redacted copies and list what was masked', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'never', logArguments: true, logResults: true, redact: { paths: ['arguments.path'] } });
  const d = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  await log.outcome({
    decision_id: d.decision_id,
    outcome: 'tool_error',
    error: { code: 'ERR_SERVICE_ERROR', message: 'denied' },
    result: { token: 'x', text: 'fine' },
  });
  await log.close();
  const [dec, out] = readRecords(file) as [Record<string, unknown>, Record<string, unknown>];
  for (const r of [dec, out]) assert.equal(validateRecord(r), true, JSON.stringify(validateRecord.errors));
  const args = (dec.input as { arguments: Record<string, unknown> }).arguments;
  assert.equal(args.path, '[REDACTED]');
  assert.deepEqual(args.headers, { Authorization: '[REDACTED]' });
  assert.equal(args.password, '[REDACTED]');
  assert.match(args.note as string, /^contact \[REDACTED\], card \[REDACTED\], key \[REDACTED\]$/);
  assert.deepEqual((dec.masked as string[]).sort(), ['/input/arguments/headers/Authorization', '/input/arguments/password', '/input/arguments/path']);
  assert.deepEqual(out.output, { token: '[REDACTED]', text: 'fine' });
  assert.deepEqual(out.masked, ['/output/token']);
  const text = readFileSync(file, 'utf8');
  for (const s of ALL_SECRETS) assert.equal(text.includes(s), false, 'a secret reached the audit file');
});

test('group commit: concurrent decisions share fdatasyncs; each resolves only after its batch is synced', async (t) => {
  const dir = tmpDir(t);
  const results: string[] = [];
  for (const fsync of ['always', 'never'] as const) {
    const file = path.join(dir, `audit-${fsync}.jsonl`);
    const log = await openAuditLog({ file, fsync });
    const first = await log.decision({ input: policyInput(), decision: decisionOf(false) });
    if (fsync === 'always') assert.ok(log.stats.fsyncs >= 1, 'the first decision was fdatasync-ed before it resolved');
    assert.equal(first.seq, 1);
    const n = 2000;
    const t0 = process.hrtime.bigint();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < n) {
        next++;
        const r = await log.decision({ input: policyInput(), decision: decisionOf(false) });
        // The record is in the file when the promise resolves.
        assert.ok(r.seq > 1, 'chained');
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const s = log.stats;
    await log.close();
    const lines = readFileSync(file, 'utf8').split('\n').length - 1;
    assert.equal(lines, s.records);
    if (fsync === 'always') {
      assert.ok(s.batches < s.records / 4, `group commit batched ${s.records} records into ${s.batches} writes`);
      assert.ok(s.fsyncs >= s.batches, 'one fdatasync per batch');
    }
    results.push(`fsync ${fsync}: ${Math.round(s.records / secs)} records/s, ${s.batches} batches, ${s.fsyncs} fsyncs`);
    assert.equal((await verifyAuditFiles([file])).ok, true);
  }
  t.diagnostic(results.join('; '));
});

test('fsync always: an outcome nobody waits on is written on the turn after, and synced by the next decision or within OWED_SYNC_MS; with syncOutcomes before it resolves', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'always', syncOutcomes: false });
  const d1 = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  const synced = log.stats.fsyncs;
  assert.ok(synced >= 1, 'the decision was fdatasync-ed before it resolved');
  await log.outcome({ decision_id: d1.decision_id, outcome: 'ok' });
  // Written (in the file when the promise resolves), not yet synced: the call's answer did not wait for a disk flush.
  assert.equal(readRecords(file).at(-1)?.kind, 'outcome');
  assert.equal(log.stats.fsyncs, synced);
  // Nothing else comes: the owed fdatasync follows on its own, once.
  const t0 = Date.now();
  while (log.stats.fsyncs === synced) await new Promise((r) => setImmediate(r));
  assert.equal(log.stats.fsyncs, synced + 1);
  assert.ok(Date.now() - t0 < OWED_SYNC_MS + 1000, 'synced within the owed-sync delay');
  // An outcome nobody waits on is formatted and written on the turn after it was given (after the
  // answer): a decision of the same tick goes first.
  const d2 = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  const [o2, d3] = await Promise.all([
    log.outcome({ decision_id: d2.decision_id, outcome: 'ok' }),
    log.decision({ input: policyInput(), decision: decisionOf(false) }),
  ]);
  assert.deepEqual([d3.seq, o2.seq], [4, 5]);
  // close() writes an outcome still waiting for its turn before it closes the file.
  const d4 = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  const o4 = log.outcome({ decision_id: d4.decision_id, outcome: 'ok' });
  await log.close();
  assert.equal((await o4).seq, 7);
  assert.deepEqual(
    readRecords(file).map((r) => r.kind),
    ['decision', 'outcome', 'decision', 'decision', 'outcome', 'decision', 'outcome'],
  );
  assert.equal((await verifyAuditFiles([file])).ok, true);

  // The default (and audit.outcome_before_answer: true): an outcome resolves only once synced.
  const strictFile = path.join(dir, 'strict.jsonl');
  const strict = await openAuditLog({ file: strictFile, fsync: 'always' });
  const d = await strict.decision({ input: policyInput(), decision: decisionOf(true) });
  const n = strict.stats.fsyncs;
  await strict.outcome({ decision_id: d.decision_id, outcome: 'ok' });
  assert.equal(strict.stats.fsyncs, n + 1);
  await strict.close();
  assert.equal(auditOptionsFromConfig({ outcome_before_answer: true }).syncOutcomes, true);
  assert.equal(auditOptionsFromConfig({}).syncOutcomes, false);
});

test("write durations are told per kind, from the record's formatting to its write, without an outcome's wait for its turn", async (t) => {
  const dir = tmpDir(t);
  let now = 0;
  const log = await openAuditLog({ file: path.join(dir, 'audit.jsonl'), fsync: 'always', syncOutcomes: false, monotonicMs: () => now });
  const told: Array<[string, number]> = [];
  log.onWritten = (kind, seconds) => told.push([kind, seconds]);
  const d = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  // The outcome waits for the turn after this one; the clock moves 5 s meanwhile, and does not
  // move again until its write resolved.
  const o = log.outcome({ decision_id: d.decision_id, outcome: 'ok' });
  now = 5000;
  await o;
  await log.event({ type: 'probe_refused', tool: 'fs.read', error: { code: 'ERR_TEST', message: 'refused' } });
  await log.close();
  assert.deepEqual(told.slice(0, 3), [
    ['decision', 0],
    ['outcome', 0],
    ['event', 0],
  ]);
});

test('a failed sync that no record waits on (the owed sync) still starts the recovery', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const real = path.join(dir, 'real.jsonl');
  // Writes to /dev/null succeed and its fdatasync fails (EINVAL): an outcome is written, its owed sync fails.
  symlinkSync('/dev/null', file);
  const log = await openAuditLog({ file, fsync: 'always', syncOutcomes: false, recoverIntervalMs: 20 });
  await log.outcome({ decision_id: 'd-1', outcome: 'ok' });
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!ok()) {
      if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  };
  await until('the owed sync failed', () => !log.healthy);
  // The disk comes back (the path now leads to a real file) and nothing else is appended: the
  // recovery that the failure started reopens it and records that it resumed.
  unlinkSync(file);
  symlinkSync(real, file);
  await until('an audit_resumed record is on disk', () => existsSync(real) && readFileSync(real, 'utf8').includes('"type":"audit_resumed"'));
  await until('the log is healthy again', () => log.healthy);
  const resumed = readRecords(real).find((r) => r.type === 'audit_resumed');
  assert.equal((resumed?.details as { file_recreated?: boolean } | undefined)?.file_recreated, true);
  assert.equal((resumed?.details as { reason?: string } | undefined)?.reason, 'EINVAL');
  await log.close();
});

test('reason messages are redacted on every record, the first and the ones after it', async (t) => {
  const file = path.join(tmpDir(t), 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'never' });
  const quoting = `token ${SECRET_JWT} is not allowed`;
  const decision = decisionOf(false, {
    reasons: [{ engine: 'rego', id: 'quotes_arguments', message: quoting }],
    engines: [{ engine: 'rego', allow: false, reasons: [{ engine: 'rego', id: 'quotes_arguments', message: quoting }] }],
  });
  for (let i = 0; i < 3; i++) await log.decision({ input: policyInput(), decision });
  await log.close();
  const records = readRecords(file).filter((r) => r.kind === 'decision');
  assert.equal(records.length, 3);
  for (const r of records) {
    const result = r.result as { reasons: Array<{ message: string }>; engines: Array<{ reasons: Array<{ message: string }> }> };
    assert.equal(result.reasons[0]?.message, 'token [REDACTED] is not allowed');
    assert.equal(result.engines[0]?.reasons[0]?.message, 'token [REDACTED] is not allowed');
  }
  assert.equal(readFileSync(file, 'utf8').includes(SECRET_JWT), false);
});

test('fail closed: a write error rejects with ERR_AUDIT_UNAVAILABLE, now and for every later record', async (t) => {
  // ENOSPC from /dev/full: the "disk full" case, for real.
  const full = await openAuditLog({ file: '/dev/full', rotateBytes: 0 });
  await assert.rejects(full.decision({ input: policyInput(), decision: decisionOf(true) }), isAuditUnavailable);
  assert.equal(full.healthy, false);
  await assert.rejects(full.decision({ input: policyInput(), decision: decisionOf(true) }), isAuditUnavailable);
  await assert.rejects(full.event({ type: 'policy_reload' }), isAuditUnavailable);
  await full.close().catch(() => {});

  // EBADF: a sink whose descriptor went away.
  const dir = tmpDir(t);
  const fd = openSync(path.join(dir, 'x'), 'w');
  closeSync(fd);
  const bad = await openAuditLog({ file: null, stdout: true, stdoutFd: fd });
  await assert.rejects(
    bad.decision({ input: policyInput(), decision: decisionOf(true) }),
    (e: unknown) => isAuditUnavailable(e) && (e as { data?: { reason?: string } }).data?.reason === 'EBADF',
  );
  await bad.close().catch(() => {});

  // Cannot open: the parent "directory" is a file.
  writeFileSync(path.join(dir, 'afile'), '');
  await assert.rejects(openAuditLog({ file: path.join(dir, 'afile', 'audit.jsonl') }), isAuditUnavailable);
  // Bad options are configuration errors.
  await assert.rejects(openAuditLog({ file: null }), (e: unknown) => isGatewayError(e) && e.code === 'ERR_CONFIG_INVALID');
});

test('restart continues the chain; a torn tail is cut and recorded; a tampered tail refuses to open', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  let log = await openAuditLog({ file, fsync: 'never' });
  await log.event({ type: 'limit_refused' });
  await log.close();
  appendFileSync(file, '{"_v":1,"kind":"decis'); // a write cut off by a crash
  log = await openAuditLog({ file, fsync: 'never' });
  await log.event({ type: 'policy_reload' });
  await log.close();
  const recs = readRecords(file);
  assert.deepEqual(
    recs.map((r) => [r.seq, r.type]),
    [
      [1, 'limit_refused'],
      [2, 'audit_recovered'],
      [3, 'policy_reload'],
    ],
  );
  assert.deepEqual(recs[1]!.details, { reason: 'incomplete last line after a crash was removed', truncated_bytes: 21 });
  assert.equal((await verifyAuditFiles([file], { requireGenesis: true })).ok, true);

  writeFileSync(file, readFileSync(file, 'utf8').replace('policy_reload', 'auth_failure'));
  await assert.rejects(openAuditLog({ file }), isAuditUnavailable);
});

test('close() waits for in-flight outcomes, records the rest as cancelled, then refuses', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'batch', fsyncIntervalMs: 5 });
  const a = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  const b = await log.decision({ input: policyInput(), decision: decisionOf(true) });
  assert.equal(log.stats.inflight, 2);
  setTimeout(() => void log.outcome({ decision_id: a.decision_id, outcome: 'ok' }), 30);
  await log.close({ drainMs: 300 });
  assert.equal(log.healthy, false);
  await assert.rejects(log.decision({ input: policyInput(), decision: decisionOf(true) }), isAuditUnavailable);
  const outs = readRecords(file).filter((r) => r.kind === 'outcome');
  assert.deepEqual(
    outs.map((r) => [r.decision_id, r.outcome]),
    [
      [a.decision_id, 'ok'],
      [b.decision_id, 'cancelled'],
    ],
  );
  assert.equal((await verifyAuditFiles([file])).ok, true);
});

test('config section: schema accepts the example and defaults; mapping resolves paths', () => {
  assert.equal(validateConfig({}), true);
  for (const ex of (schema('config-audit.schema.json') as { examples: unknown[] }).examples)
    assert.equal(validateConfig(ex), true, JSON.stringify(validateConfig.errors));
  assert.equal(validateConfig({ fsync: 'sometimes' }), false);
  assert.equal(validateConfig({ unknown_key: 1 }), false);
  const o = auditOptionsFromConfig({ log_arguments: true, redact: { paths: ['arguments.x'] } }, { dev: true, baseDir: '/etc/mm' });
  assert.equal(o.file, '/etc/mm/.dev/audit/audit.jsonl');
  assert.equal(o.fsync, 'always');
  assert.equal(o.logArguments, true);
  assert.equal(auditOptionsFromConfig({ file: null, stdout: true }).file, null);
});
