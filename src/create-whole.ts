/**
 * Creates a file only if it does not exist, so that it is never seen half written: the content goes
 * to a private temporary file beside it, which is then link()ed into place. link() fails with EEXIST
 * when the file exists, so racing creators get one winner, and a reader sees the whole content or no
 * file. Writing in place after an O_EXCL create let a reader in between see an empty file: a dev key
 * that would not parse, an audit lock that looked abandoned.
 *
 * A file system without hard links (vfat, some network mounts) gets the O_EXCL create and write,
 * with that window.
 */
import { randomUUID } from 'node:crypto';
import { link as fsLink, rm, writeFile } from 'node:fs/promises';

const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/** Resolves to true when this call created `file` with `content`, false when it already existed. */
export async function createWhole(file: string, content: string, mode: number, link: typeof fsLink = fsLink): Promise<boolean> {
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  try {
    await writeFile(tmp, content, { flag: 'wx', mode });
    await link(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_HARD_LINKS.has(code)) throw e;
  } finally {
    await rm(tmp, { force: true });
  }
  try {
    await writeFile(file, content, { flag: 'wx', mode });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}
