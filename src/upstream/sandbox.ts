/**
 * The OS sandbox of a stdio service: bubblewrap (`bwrap`), built from the service's `sandbox` config.
 *
 * The child gets its own user (uid/gid 65534, no capabilities), PID, IPC, UTS and cgroup namespaces,
 * and its own network namespace unless `network: true` (then the host's network, and only the files a
 * name lookup reads). Its file system is an empty read-only root with, read-only at their own paths:
 * the executable and the shared libraries it loads, the gateway's installation code (dist/,
 * node_modules/, package.json), the gateway's run dir (the credential JWKS), `read` (its data),
 * a fresh /proc of its own PID namespace and a minimal /dev. Its environment is exactly the one the
 * transport spawns it with (bwrap adds PWD). It dies with the gateway (--die-with-parent) and
 * has no controlling terminal (--new-session).
 *
 * Fail closed: anything that stops the sandbox from being built as configured (bwrap missing, a
 * path to bind missing, libraries that cannot be listed) is a SandboxError, and the service does
 * not start; the connection reports the reason (/readyz).
 */
import { execFile } from 'node:child_process';
import { constants as C, accessSync, existsSync, promises as fsp, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A service's sandbox as configured (`services.<name>.sandbox`), defaults applied. */
export interface SandboxSpec {
  mode: 'bwrap' | 'none';
  /** Data paths the service may read, besides its code. */
  read: readonly string[];
  /** Share the host's network namespace. */
  network: boolean;
  /** Paths the gateway adds for this service (its run dir). */
  gatewayRead?: readonly string[];
}

/** Why a sandboxed service could not be started. The message names config paths, never arguments. */
export class SandboxError extends Error {
  override name = 'SandboxError';
}

/** The uid and gid the service runs as inside its user namespace ("nobody"). */
const SANDBOX_ID = '65534';
/** What a name lookup reads (glibc getaddrinfo through Node's dns.lookup); bound only with network. */
const RESOLVER_FILES = ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf', '/etc/gai.conf', '/etc/host.conf'];
/** The resolver modules glibc before 2.34 loads at run time (not listed by ld.so); bound beside libc when present. */
const RESOLVER_LIBS = ['libnss_files.so.2', 'libnss_dns.so.2', 'libresolv.so.2'];

/** The gateway's installation: the folder holding package.json above this module (src/ or dist/src/). */
export const INSTALL_ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('micro-mcp: package.json not found above src/upstream');
    dir = up;
  }
  return dir;
})();

/** The installation code every sandboxed service may read. */
function installCode(): string[] {
  return ['dist', 'node_modules', 'package.json'].map((p) => path.join(INSTALL_ROOT, p)).filter((p) => existsSync(p));
}

/** The first executable `name` on `searchPath` (a PATH value); `name` itself when it has a slash. */
function which(name: string, searchPath: string): string | undefined {
  const candidates = name.includes('/')
    ? [name]
    : searchPath
        .split(':')
        .filter(Boolean)
        .map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, C.X_OK);
      return path.resolve(c);
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** The bwrap binary the gateway uses: the first on its own PATH. */
export function findBwrap(): string | undefined {
  return which('bwrap', process.env.PATH ?? '');
}

const libraryCache = new Map<string, Promise<string[]>>();

/**
 * The files an executable needs to start: itself, its ELF interpreter (dynamic loader) and every
 * shared library the loader resolves for it (`ld.so --list`, what ldd prints), plus the loader's cache.
 * Computed once per executable.
 */
export function executableFiles(exe: string): Promise<string[]> {
  let p = libraryCache.get(exe);
  if (!p) {
    p = listExecutableFiles(exe);
    libraryCache.set(exe, p);
    p.catch(() => libraryCache.delete(exe));
  }
  return p;
}

async function listExecutableFiles(exe: string): Promise<string[]> {
  const interp = await elfInterpreter(exe);
  if (interp === undefined) return [exe]; // statically linked
  const out = await new Promise<string>((resolve, reject) => {
    execFile(interp, ['--list', exe], { timeout: 10_000, env: {}, encoding: 'utf8' }, (err, stdout) =>
      err ? reject(new SandboxError(`cannot list the shared libraries of ${exe} with ${interp}`)) : resolve(stdout),
    );
  });
  const files = new Set<string>([exe, interp]);
  for (const line of out.split('\n')) {
    if (/=>\s*not found/.test(line)) throw new SandboxError(`a shared library of ${exe} is not found: ${line.trim()}`);
    const m = /=>\s*(\/\S+)\s+\(0x/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (m) files.add(m[1]!);
  }
  if (existsSync('/etc/ld.so.cache')) files.add('/etc/ld.so.cache');
  return [...files];
}

/** The PT_INTERP of an ELF executable (undefined when static); a SandboxError for anything but ELF. */
async function elfInterpreter(exe: string): Promise<string | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(exe, 'r');
  } catch {
    throw new SandboxError(`the service command is not readable: ${exe}`);
  }
  try {
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      if (bytesRead !== len) throw new SandboxError(`the service command is not a complete ELF executable: ${exe}`);
      return buf;
    };
    const h = await read(0, 64);
    if (h.readUInt32BE(0) !== 0x7f454c46) {
      throw new SandboxError(`the service command is not an ELF executable (a script?): ${exe}; run its interpreter as the command instead`);
    }
    const is64 = h[4] === 2;
    if (h[5] !== 1) throw new SandboxError(`big-endian executables are not supported by the sandbox: ${exe}`);
    const phoff = is64 ? Number(h.readBigUInt64LE(32)) : h.readUInt32LE(28);
    const phentsize = h.readUInt16LE(is64 ? 54 : 42);
    const phnum = h.readUInt16LE(is64 ? 56 : 44);
    const ph = await read(phoff, phentsize * phnum);
    for (let i = 0; i < phnum; i++) {
      const e = ph.subarray(i * phentsize, (i + 1) * phentsize);
      if (e.readUInt32LE(0) !== 3) continue; // PT_INTERP
      const off = is64 ? Number(e.readBigUInt64LE(8)) : e.readUInt32LE(4);
      const size = is64 ? Number(e.readBigUInt64LE(32)) : e.readUInt32LE(16);
      if (size < 2 || size > 4096) throw new SandboxError(`the service command has a malformed ELF interpreter: ${exe}`);
      return (await read(off, size)).toString('latin1').replace(/\0.*$/s, '');
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

/** The command line that runs `command args` in the sandbox. */
export interface SandboxedCommand {
  command: string;
  args: string[];
}

/**
 * Builds the bwrap command line for `command args` (command resolved on `searchPath` when it has no
 * slash). Throws SandboxError when bwrap is missing or a path to bind does not exist.
 */
export async function bwrapCommand(
  spec: SandboxSpec,
  command: string,
  args: readonly string[],
  opts: { cwd?: string; searchPath?: string } = {},
): Promise<SandboxedCommand> {
  const bwrap = findBwrap();
  if (!bwrap) {
    throw new SandboxError(
      'bubblewrap (bwrap) is not installed: install it (Debian: apt-get install bubblewrap) or set sandbox: {mode: none} for this service',
    );
  }
  const exe = which(command, opts.searchPath ?? process.env.PATH ?? '');
  if (!exe) throw new SandboxError(`the service command is not found: ${command}`);
  let real: string;
  try {
    real = realpathSync(exe);
  } catch {
    throw new SandboxError(`the service command is not found: ${command}`);
  }
  for (const p of spec.read) {
    if (!path.isAbsolute(p)) throw new SandboxError(`sandbox.read paths must be absolute: ${p}`);
    if (!existsSync(p)) throw new SandboxError(`a sandbox.read path does not exist: ${p}`);
  }
  const code = await executableFiles(real);
  const resolverLibs = spec.network
    ? code
        .filter((f) => path.basename(f).startsWith('libc.so'))
        .flatMap((libc) => RESOLVER_LIBS.map((l) => path.join(path.dirname(libc), l)))
        .filter((f) => existsSync(f))
    : [];
  // The executable is bound at the path it is run by, too (a symlink such as /usr/bin/node).
  const binds = new Set<string>([...code, ...resolverLibs, exe, ...installCode(), ...(spec.gatewayRead ?? []).filter((p) => existsSync(p)), ...spec.read]);
  // Parents before children, so a later bind never hides an earlier one.
  const sorted = [...binds].map((p) => path.resolve(p)).sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
  const argv: string[] = [
    '--die-with-parent',
    '--new-session',
    '--unshare-user',
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(spec.network ? [] : ['--unshare-net']),
    '--uid',
    SANDBOX_ID,
    '--gid',
    SANDBOX_ID,
    '--cap-drop',
    'ALL',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    ...sorted.flatMap((p) => ['--ro-bind', p, p]),
    ...(spec.network ? RESOLVER_FILES.flatMap((f) => ['--ro-bind-try', f, f]) : []),
    '--remount-ro',
    '/',
    '--chdir',
    opts.cwd ?? '/',
    '--',
    exe,
    ...args,
  ];
  return { command: bwrap, args: argv };
}
