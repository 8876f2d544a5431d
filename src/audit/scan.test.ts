import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../policy/rego/opa.js';
import type { RedactCategory } from '../types.js';
import { CENSOR, createRedactor, SecretFinder } from './redact.js';
import { foldKey, isSecretKeyName } from './scan.js';
import { adversarial, type AdversarialCase } from './testdata/adversarial.js';

const root = repoRoot() as string;
const corpus = <T>(name: string): T => JSON.parse(readFileSync(join(root, 'test', 'corpora', name), 'utf8')) as T;

interface Planted {
  id: string;
  category: RedactCategory;
  planted: string;
  value: unknown;
}
const ALL: RedactCategory[] = ['email', 'phone', 'card', 'secrets'];
const r = createRedactor();

test('every planted secret and PII value of the corpus is removed, and counted in its category', () => {
  const { cases } = corpus<{ cases: Planted[] }>('secrets-pii.json');
  assert.ok(cases.length >= 30);
  for (const c of cases) {
    const { value, counts } = r.filter(c.value, ALL);
    const out = JSON.stringify(value);
    assert.equal(out.includes(c.planted), false, `${c.id}: the planted value survived: ${out}`);
    assert.ok(out.includes(CENSOR), c.id);
    assert.ok((counts[c.category] ?? 0) >= 1, `${c.id}: counted ${JSON.stringify(counts)}, expected ${c.category}`);
    // The audit and the operational log use the same scanners (all categories).
    assert.equal(JSON.stringify(r.redact(c.value, 'result').value).includes(c.planted), false, `${c.id} (redact)`);
  }
});

test('a filter removes only the categories asked for', () => {
  const text = 'mail jane.doe@example.org, card 4111 1111 1111 1111, phone +44 20 7946 0958, key AKIAIOSFODNN7EXAMPLE';
  assert.deepEqual(r.filter(text, ['email']), {
    value: `mail ${CENSOR}, card 4111 1111 1111 1111, phone +44 20 7946 0958, key AKIAIOSFODNN7EXAMPLE`,
    counts: { email: 1 },
  });
  assert.deepEqual(r.filter(text, ['card', 'secrets']), {
    value: `mail jane.doe@example.org, card ${CENSOR}, phone +44 20 7946 0958, key ${CENSOR}`,
    counts: { card: 1, secrets: 1 },
  });
  assert.deepEqual(r.filter(text, ['phone']).counts, { phone: 1 });
  assert.deepEqual(r.filter({ max_tokens: 5, total_tokens: 9, token: 7 }, ['secrets']), { value: { max_tokens: 5, total_tokens: 9, token: 7 }, counts: {} });
});

test('ordinary text keeps its numbers, words and URLs', () => {
  const plain = 'order 1234567812345678 at 1700000000000, on 2026-01-01T00:00:00Z, see https://docs.example.com/a?b=c; the token is missing; v1.2.3';
  assert.deepEqual(r.filter(plain, ALL), { value: plain, counts: {} });
});

test("the caller's own token is found raw, base64, base64url, URL-encoded, inside a larger encoded blob and split across two arguments", () => {
  const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsInNjb3BlIjoiZnM6cmVhZCJ9.Zm9vYmFyYmF6cXV4c2lnbmF0dXJlLXZhbHVl+/x';
  const finder = new SecretFinder([token]);
  const b64 = Buffer.from(token).toString('base64');
  const b64url = Buffer.from(token).toString('base64url');
  const blob = Buffer.from(`Authorization header was: ${token} (end)`).toString('base64');
  const half = Math.floor(token.length / 2);
  const args = {
    raw: `t=${token}`,
    b64,
    b64url,
    url: encodeURIComponent(token),
    blob,
    first: token.slice(0, half),
    second: token.slice(half),
  };
  const { value, counts } = r.filter(args, ['secrets'], finder);
  const out = JSON.stringify(value);
  for (const [k, v] of Object.entries(args)) {
    // Nothing of 16 characters or more of any form survives.
    const forms = [token, b64, b64url, encodeURIComponent(token)];
    for (const f of forms) for (let i = 0; i + 16 <= f.length; i += 8) assert.equal(out.includes(f.slice(i, i + 16)), false, `${k}: ${v.slice(0, 20)}`);
  }
  assert.ok((counts.secrets ?? 0) >= 7);
  // Without the finder the base64 forms are not secrets by shape.
  assert.ok(JSON.stringify(r.filter({ b64 }, ['secrets']).value).includes(b64));
});

test('secret-looking keys are matched after folding confusables, width and invisible characters', () => {
  assert.equal(foldKey('pаsswоrd'), 'password'); // Cyrillic а and о
  assert.equal(foldKey('ＳＥＣＲＥＴ'), 'secret');
  assert.equal(foldKey('to\u200bken'), 'token');
  for (const k of [
    'pwd',
    'pass',
    'db_pass',
    'auth',
    'creds',
    'password',
    'secret',
    'token',
    'api_key',
    'aws_secret_access_key',
    'DB-PWD',
    'pаssword',
    'Рassword',
  ])
    assert.equal(isSecretKeyName(k), true, k);
  for (const k of ['max_tokens', 'author', 'passenger', 'path', 'sort_key', 'public_key', 'description', 'compass']) assert.equal(isSecretKeyName(k), false, k);
});

test('adversarial strings of 256 KiB pass through every scanner and keep their length bounds', () => {
  const { cases } = corpus<{ cases: AdversarialCase[] }>('redact-adversarial.json');
  assert.ok(cases.length >= 10);
  const finder = new SecretFinder(['eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln']);
  for (const c of cases) {
    const s = adversarial(c, 256 * 1024);
    const { value } = r.filter(s, ALL, finder);
    assert.equal(typeof value, 'string', c.id);
    // Censoring only ever shortens or keeps (the censor is shorter than anything it replaces here).
    assert.ok((value as string).length <= s.length + CENSOR.length, c.id);
  }
});
