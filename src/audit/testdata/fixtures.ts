/** Shared fixtures for the audit tests (and the load child). Not imported by production code. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Decision, PolicyInput } from '../../types.js';

/** Secrets that must never appear in any file or output of the tests. */
export const SECRET_JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsInNlY3JldCI6Imh1bnRlcjIifQ.c2lnbmF0dXJlLXNlbnRpbmVs';
export const SECRET_PASSWORD = 'hunter2-sentinel-pw';
export const SECRET_APIKEY = 'sk-sentinelAPIKEY0123456789abcdef';
export const SECRET_EMAIL = 'sentinel.person@example.org';
export const SECRET_CARD = '4111 1111 1111 1111';
export const ALL_SECRETS = [SECRET_JWT, SECRET_PASSWORD, SECRET_APIKEY, SECRET_EMAIL, SECRET_CARD, 'hunter2'];

export function tmpDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'micro-mcp-audit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function policyInput(over: Partial<PolicyInput> = {}): PolicyInput {
  return {
    phase: 'call',
    method: 'tools/call',
    action: 'call_tool',
    principal: { id: 'alice', type: 'user', issuer: 'https://idp.test', groups: ['dev'], purposes: [], attributes: {} },
    client: { id: 'agent-cli' },
    scopes: ['fs:read'],
    purpose: 'incident-4711',
    tool: { name: 'fs.read', namespace: 'fs', local_name: 'read', annotations: { readOnlyHint: true }, definition_hash: `sha256:${'a'.repeat(64)}` },
    arguments: {
      path: '/srv/data/report.txt',
      headers: { Authorization: `Bearer ${SECRET_JWT}` },
      password: SECRET_PASSWORD,
      note: `contact ${SECRET_EMAIL}, card ${SECRET_CARD}, key ${SECRET_APIKEY}`,
    },
    resource: { path: '/srv/data/report.txt' },
    context: { time: '2026-01-01T00:00:00.000Z', request_id: 'req-1', session_id: 'sess-1', client_ip: '127.0.0.1' },
    ...over,
  };
}

export function decisionOf(allow: boolean, over: Partial<Decision> = {}): Decision {
  return {
    allow,
    reasons: [{ engine: 'rego', id: allow ? 'fs_read_allowed' : 'fs_read_requires_scope', message: allow ? 'reader may read' : 'missing scope fs:read' }],
    obligations: {},
    policy_revision: `sha256:${'b'.repeat(64)}`,
    eval_us: 17,
    ...over,
  };
}
