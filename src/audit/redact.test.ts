import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { isGatewayError } from '../errors.js';
import { createLogger } from './logger.js';
import { CENSOR, createRedactor } from './redact.js';
import { ALL_SECRETS, SECRET_APIKEY, SECRET_CARD, SECRET_EMAIL, SECRET_JWT, SECRET_PASSWORD } from './testdata/fixtures.js';

const r = createRedactor({
  paths: ['arguments.body.ssn', 'arguments.items[*].card', 'arguments.headers.*', '$.result["x-internal"]'],
  patterns: ['\\bACME-[0-9]{8}\\b'],
  keys: ['pin'],
});

test('secret key names are censored at any depth, case- and punctuation-insensitively', () => {
  const cases: Array<[string, unknown]> = [
    ['authorization', { authorization: 'Basic Zm9vOmJhcg==' }],
    ['Authorization', { deep: { Authorization: 'x' } }],
    ['access_token', { list: [{ access_token: 'abc' }] }],
    ['X-Api-Key', { 'X-Api-Key': 'k' }],
    ['db_password', { db_password: 'p' }],
    ['privateKey', { privateKey: 'pk' }],
    ['refresh-token', { 'refresh-token': 'rt' }],
    ['client_secret', { client_secret: 's' }],
    ['cookie', { cookie: 'session=1' }],
    ['pin (configured)', { PIN: '1234' }],
  ];
  for (const [name, v] of cases) {
    const out = JSON.stringify(r.redact(v, 'arguments').value);
    assert.match(out, /\[REDACTED\]/, name);
    assert.doesNotMatch(out, /Zm9v|"abc"|"k"|"p"|"pk"|"rt"|"s"|session=1|1234/, name);
  }
  // ordinary keys that merely contain the words stay
  const kept = r.redact({ max_tokens: 5, tokens_used: 7, sort_key: 'name', author: 'bob' }, 'arguments').value;
  assert.deepEqual(kept, { max_tokens: 5, tokens_used: 7, sort_key: 'name', author: 'bob' });
});

test('value patterns censor secrets inside free text and keep the rest', () => {
  const table: Array<[string, string, RegExp]> = [
    [`Bearer ${SECRET_JWT}`, 'Bearer [REDACTED]', /Bearer \[REDACTED\]/],
    [`token ${SECRET_JWT} end`, '', /end$/],
    [`mail ${SECRET_EMAIL} now`, 'mail [REDACTED] now', /^mail \[REDACTED\] now$/],
    [`card ${SECRET_CARD}.`, '', /^card \[REDACTED\]\.$/],
    ['card 4111-1111-1111-1111', '', /^card \[REDACTED\]$/],
    [`key ${SECRET_APIKEY}`, '', /^key \[REDACTED\]$/],
    ['aws AKIAIOSFODNN7EXAMPLE', '', /^aws \[REDACTED\]$/],
    ['-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----', '', /^\[REDACTED\]$/],
    ['https://user:pa55word@db.example/x', '', /^https:\/\/\[REDACTED\]\/x$/],
    ['GET /cb?code=abc123&state=ok', '', /code=\[REDACTED\]&state=ok/],
    [`password=${SECRET_PASSWORD} retry`, '', /password=\[REDACTED\] retry/],
    ['ticket ACME-12345678', '', /^ticket \[REDACTED\]$/],
  ];
  for (const [input, , want] of table) {
    const out = r.redactString(input);
    assert.match(out, want, input.slice(0, 20));
    for (const s of ALL_SECRETS) assert.equal(out.includes(s), false, `secret #${ALL_SECRETS.indexOf(s)} survived redaction`);
  }
  // not secrets: a 16-digit number failing Luhn, timestamps, plain words
  assert.equal(r.redactString('order 1234567812345678 at 1700000000000'), 'order 1234567812345678 at 1700000000000');
  assert.equal(r.redactString('the token is missing'), 'the token is missing');
});

test('configured JSON paths, wildcards and array indexes; masked pointers; input untouched', () => {
  const args = { body: { ssn: '123-45-6789', name: 'x' }, items: [{ card: 'c1', n: 1 }, { card: 'c2' }], headers: { 'x-trace': 't', accept: 'json' } };
  const snapshot = structuredClone(args);
  const res = r.redact(args, 'arguments');
  assert.deepEqual(res.value, {
    body: { ssn: CENSOR, name: 'x' },
    items: [{ card: CENSOR, n: 1 }, { card: CENSOR }],
    headers: { 'x-trace': CENSOR, accept: CENSOR },
  });
  assert.deepEqual(res.masked.sort(), [
    '/arguments/body/ssn',
    '/arguments/headers/accept',
    '/arguments/headers/x-trace',
    '/arguments/items/0/card',
    '/arguments/items/1/card',
  ]);
  assert.deepEqual(args, snapshot, 'the caller object is not mutated');
  assert.deepEqual(r.redact({ 'x-internal': 1, ok: 2 }, 'result').value, { 'x-internal': CENSOR, ok: 2 });
  // paths are rooted: the same member under another root is untouched
  assert.deepEqual(r.redact({ body: { ssn: 's' } }, 'result').value, { body: { ssn: 's' } });
});

test('bad paths and patterns fail at build time with the config key', () => {
  for (const opts of [{ paths: ['a..b'] }, { paths: ['a[x'] }, { patterns: ['(unclosed'] }]) {
    assert.throws(
      () => createRedactor(opts),
      (e: unknown) => isGatewayError(e) && e.code === 'ERR_CONFIG_INVALID' && typeof e.data?.key === 'string',
    );
  }
});

test('the operational logger censors secrets in objects, messages and errors', () => {
  let out = '';
  const dest = new Writable({
    write(chunk: Buffer, _e, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const log = createLogger({ level: 'debug', destination: dest });
  log.info({ req: { headers: { authorization: `Bearer ${SECRET_JWT}`, host: 'h' } }, user: SECRET_EMAIL }, 'request');
  log.warn(`upstream said password=${SECRET_PASSWORD} for ${SECRET_APIKEY}`);
  log.error({ err: new Error(`fetch https://u:${SECRET_PASSWORD}@x.test failed with ${SECRET_JWT}`) }, 'boom');
  log.debug({ nested: [{ api_key: SECRET_APIKEY }] }, 'card %s', SECRET_CARD);
  assert.equal(out.trim().split('\n').length, 4, out);
  for (const s of ALL_SECRETS) assert.equal(out.includes(s), false, `secret #${ALL_SECRETS.indexOf(s)} reached the operational log`);
  assert.match(out, /"host":"h"/);
  assert.match(out, /"msg":"request"/);
});
