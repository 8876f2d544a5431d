/**
 * A real process that writes audit records under load, for the kill -9 / SIGTERM / stdout tests.
 * It "forwards" a call (appends its decision id to forwarded.txt) only after decision() resolved,
 * exactly as the gateway must. Config comes as JSON in AUDIT_CHILD.
 */
import { openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { openAuditLog } from '../audit-log.js';
import type { FsyncMode } from '../sink.js';
import { decisionOf, policyInput } from './fixtures.js';

interface ChildConfig {
  dir: string;
  mode: 'load' | 'stdout';
  fsync: FsyncMode;
  rotateBytes: number;
  workers: number;
}

const cfg = JSON.parse(process.env.AUDIT_CHILD ?? '{}') as ChildConfig;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

if (cfg.mode === 'stdout') {
  const log = await openAuditLog({ file: null, stdout: true, fsync: cfg.fsync, logArguments: true });
  for (let i = 0; i < 20; i++) {
    const d = await log.decision({ input: policyInput(), decision: decisionOf(i % 4 !== 0) });
    if (i % 4 !== 0) await log.outcome({ decision_id: d.decision_id, outcome: 'ok', service_us: 5 });
  }
  await log.close();
} else {
  const log = await openAuditLog({ file: path.join(cfg.dir, 'audit.jsonl'), fsync: cfg.fsync, rotateBytes: cfg.rotateBytes, keepFiles: 0, logArguments: true });
  const fwd = openSync(path.join(cfg.dir, 'forwarded.txt'), 'a');
  let stopping = false;
  let forwarded = 0;
  let n = 0;
  process.on('SIGTERM', () => {
    stopping = true;
    // The gateway's shutdown: stop taking calls, let running ones finish, flush, exit.
    void log.close({ drainMs: 3000 }).then(() => {
      process.stdout.write(`CLOSED ${forwarded}\n`);
      process.exit(0);
    });
  });
  const worker = async (): Promise<void> => {
    while (!stopping) {
      const allow = n++ % 5 !== 0;
      const d = await log.decision({
        input: policyInput({ context: { time: new Date().toISOString(), request_id: `r${n}`, session_id: 's', client_ip: '127.0.0.1' } }),
        decision: decisionOf(allow),
      });
      if (!allow) continue;
      writeSync(fwd, `${d.decision_id}\n`); // forwarded only now, after the decision is durable
      if (++forwarded === 200) process.stdout.write('READY\n');
      await sleep(Math.random() * 3);
      await log.outcome({ decision_id: d.decision_id, outcome: 'ok', service_us: 100, result: { content: [{ type: 'text', text: 'ok' }] } });
    }
  };
  await Promise.all(Array.from({ length: cfg.workers }, worker));
  await new Promise(() => {}); // SIGTERM handler exits
}
