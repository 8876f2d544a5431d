import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { COMMON_FLAGS, UsageError, commonOptions, helpText, intFlag, parseFlags } from './args.js';
import type { FlagSpecs } from './args.js';

const SPECS = {
  root: { type: 'string', multiple: true, value: 'DIR', help: 'a root' },
  'max-bytes': { type: 'string', value: 'N', help: 'a cap' },
  ...COMMON_FLAGS,
} satisfies FlagSpecs;

const usage = (argv: string[], message: RegExp): void => {
  assert.throws(
    () => parseFlags(argv, SPECS),
    (e: unknown) => e instanceof UsageError && message.test(e.message),
    argv.join(' '),
  );
};

describe('services/common/args', () => {
  it('reads switches, single values (both spellings) and every value of a repeatable flag', () => {
    const f = parseFlags(['--root', '/a', '--root=/b', '--max-bytes=10', '--check', '--root', '-'], SPECS);
    assert.deepEqual(f.root, ['/a', '/b', '-']);
    assert.equal(f['max-bytes'], '10');
    assert.equal(f.check, true);
    assert.equal(f.help, undefined);
    assert.deepEqual(Object.keys(parseFlags([], SPECS)), []);
    assert.equal(parseFlags(['--max-bytes=-1'], SPECS)['max-bytes'], '-1', 'a value starting with a dash needs "="');
  });

  it('refuses unknown flags, missing, empty and duplicated values, values on switches and positionals', () => {
    usage(['--frobnicate'], /^unknown flag --frobnicate \(see --help\)$/);
    usage(['--root', '/a', '--bogus=1'], /^unknown flag --bogus /);
    usage(['-h'], /^unknown flag -h /);
    usage(['--root'], /^--root needs a value$/);
    usage(['--max-bytes', '--check'], /^--max-bytes needs a value$/);
    usage(['--max-bytes', '-1'], /^--max-bytes needs a value$/);
    usage(['--root='], /^--root needs a non-empty value$/);
    usage(['--max-bytes', ''], /^--max-bytes needs a non-empty value$/);
    usage(['--max-bytes', '1', '--max-bytes=2'], /^--max-bytes given more than once$/);
    usage(['--check=yes'], /^--check takes no value$/);
    usage(['stray'], /^unexpected argument "stray" \(flags start with --\)$/);
    usage(['--check', '--', '--root'], /^unexpected argument/);
    usage(['--check', '--'], /^unexpected argument "--"/);
    usage(['--constructor'], /^unknown flag --constructor /);
  });

  it('reads whole numbers within bounds', () => {
    assert.equal(intFlag({}, 'max-bytes', 7, 1, 10), 7);
    assert.equal(intFlag({ 'max-bytes': '10' }, 'max-bytes', 7, 1, 10), 10);
    assert.throws(() => intFlag({ 'max-bytes': '1e3' }, 'max-bytes', 7, 1, 10), /--max-bytes must be a whole number/);
    assert.throws(() => intFlag({ 'max-bytes': '11' }, 'max-bytes', 7, 1, 10), /--max-bytes must be between 1 and 10/);
  });

  it('reads the common flags', () => {
    assert.deepEqual(commonOptions(parseFlags(['--http-port', '0', '--no-sandbox-check'], SPECS)), {
      httpPort: 0,
      sandboxCheck: false,
      check: false,
      help: false,
    });
    assert.deepEqual(commonOptions(parseFlags(['--help'], SPECS)), { sandboxCheck: true, check: false, help: true });
  });

  it('lists every flag with its help text', () => {
    const text = helpText('Usage: x', SPECS);
    for (const [name, spec] of Object.entries(SPECS)) assert.ok(text.includes(`--${name}`) && text.includes(spec.help), name);
    assert.match(text, /--root DIR +a root \(repeatable\)/);
    assert.match(text, /--check +validate/);
  });
});
