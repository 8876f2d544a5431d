/**
 * Start-up check of Node's permission model (Node 20: `--experimental-permission`). The services are
 * meant to run with `--allow-fs-read` limited to their own code and (for fs) their roots, with no
 * write, child-process or worker permission, so a bug in a service cannot reach beyond that. This
 * check refuses to start when the model is off or too wide, unless the operator opts out with
 * `--no-sandbox-check` (development only).
 */

import { tmpdir } from 'node:os';

/**
 * Returns problems with the current sandbox (empty when it is as tight as expected).
 * `needs.procFd`: the service reads directories through their open handles (/proc/self/fd/N).
 */
export function sandboxProblems(readablePaths: readonly string[], needs: { procFd?: boolean } = {}): string[] {
  // @types/node declares `permission` always present; it is undefined when the model is off.
  const perm: NodeJS.ProcessPermission | undefined = process.permission;
  if (!perm) return ['the Node permission model is off (start with --experimental-permission --allow-fs-read=...)'];
  const problems: string[] = [];
  // has('fs.write') without a path is false when only some subtrees are writable: probe the roots
  // and the usual writable places too.
  const writeProbes = [...readablePaths, '/', '/tmp', tmpdir(), process.cwd()];
  if (perm.has('fs.write') || writeProbes.some((p) => perm.has('fs.write', p)))
    problems.push('file-system write permission is granted (drop --allow-fs-write)');
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
