/**
 * Start-up check of Node's permission model (Node 20: `--experimental-permission`). The services are
 * meant to run with `--allow-fs-read` limited to their own code and (for fs) their roots, with no
 * write, child-process or worker permission, so a bug in a service cannot reach beyond that. This
 * check refuses to start when the model is off or too wide, unless the operator opts out with
 * `--no-sandbox-check` (development only).
 */

import { tmpdir } from 'node:os';
import { dirname } from 'node:path';

/**
 * Returns problems with the current sandbox (empty when it is as tight as expected).
 * `needs.procFd`: the service reads directories through their open handles (/proc/self/fd/N).
 * `needs.writable`: folders the service writes (the vector store with --allow-writes): write
 * permission must cover them and nothing else.
 */
export function sandboxProblems(readablePaths: readonly string[], needs: { procFd?: boolean; writable?: readonly string[] } = {}): string[] {
  // @types/node declares `permission` always present; it is undefined when the model is off.
  const perm: NodeJS.ProcessPermission | undefined = process.permission;
  if (!perm) return ['the Node permission model is off (start with --experimental-permission --allow-fs-read=...)'];
  const problems: string[] = [];
  // has('fs.write') without a path is false when only some subtrees are writable: probe the roots
  // and the usual writable places too.
  const writable = needs.writable ?? [];
  const inside = (p: string) => writable.some((w) => p === w || p.startsWith(`${w}/`));
  // A grant to a folder above a writable path also covers it: probe each one's parent and a sibling.
  const around = writable.flatMap((w) => [dirname(w), `${w}.sibling-probe`]);
  const writeProbes = [...readablePaths, '/', '/tmp', tmpdir(), process.cwd(), ...around].filter((p) => !inside(p));
  if (perm.has('fs.write') || writeProbes.some((p) => perm.has('fs.write', p)))
    problems.push(
      writable.length > 0
        ? 'file-system write permission reaches beyond the writable store (limit --allow-fs-write to it)'
        : 'file-system write permission is granted (drop --allow-fs-write)',
    );
  for (const w of writable) if (!perm.has('fs.write', w)) problems.push(`the writable store is not covered by --allow-fs-write: ${w}`);
  if (perm.has('child')) problems.push('child-process permission is granted (drop --allow-child-process)');
  if (perm.has('worker')) problems.push('worker permission is granted (drop --allow-worker)');
  // Probe well-known files instead of "/": Node 20's has('fs.read', '/') answers true for some
  // narrow allow lists (seen with three or more entries), so it cannot tell "everything" apart.
  if (perm.has('fs.read', '/etc/passwd') || perm.has('fs.read', '/proc/self/environ'))
    problems.push('read permission covers system files (limit --allow-fs-read to the code and the roots)');
  for (const p of readablePaths) {
    if (!perm.has('fs.read', p)) problems.push(`a configured root is not readable under --allow-fs-read: ${p}`);
  }
  if (needs.procFd && !perm.has('fs.read', '/proc/self/fd'))
    problems.push('directories are read through their open handles: add --allow-fs-read=/proc/self/fd');
  return problems;
}
