import assert from 'node:assert/strict';
import { type link, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createWhole } from './create-whole.js';

const failing =
  (code: string): typeof link =>
  async () => {
    throw Object.assign(new Error(`link: ${code}`), { code });
  };

describe('createWhole', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mmcp-whole-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the file with its content and mode once; a second call leaves it as it is', async () => {
    const file = join(dir, 'a');
    assert.equal(await createWhole(file, 'first\n', 0o600), true);
    assert.equal(await createWhole(file, 'second\n', 0o600), false);
    assert.equal(await readFile(file, 'utf8'), 'first\n');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['a'], 'no temporary file is left');
  });

  it('without hard links (EPERM, as vfat answers) it creates the file with O_EXCL instead', async () => {
    const file = join(dir, 'b');
    assert.equal(await createWhole(file, 'whole\n', 0o600, failing('EPERM')), true);
    assert.equal(await createWhole(file, 'other\n', 0o600, failing('EPERM')), false);
    assert.equal(await readFile(file, 'utf8'), 'whole\n');
    assert.deepEqual((await readdir(dir)).sort(), ['a', 'b']);
  });

  it('any other failure is thrown, and nothing is left behind', async () => {
    const file = join(dir, 'c');
    await assert.rejects(createWhole(file, 'x\n', 0o600, failing('EIO')), { code: 'EIO', message: 'link: EIO' });
    assert.deepEqual((await readdir(dir)).sort(), ['a', 'b']);
  });
});
