/**
 * A stdio client transport that gives the child exactly the environment its config names, inside
 * its OS sandbox (./sandbox.ts: bubblewrap unless the config says `sandbox: {mode: none}`).
 *
 * The SDK's StdioClientTransport always merges its "safe default" variables (HOME, PATH, USER, ...)
 * into the child's environment; a least-privilege service must get nothing of the gateway's own
 * environment, so we spawn ourselves. Framing reuses the SDK's ReadBuffer/serializeMessage. The
 * environment is handed to bwrap, which passes it on: no value ever appears on a command line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { ReadBuffer, serializeMessage, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/client';
import { bwrapCommand, type SandboxSpec } from './sandbox.js';

export interface ChildSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Called with each line the child writes to stderr (operational diagnostics, not protocol). */
  onStderr?: (line: string) => void;
  /** Largest single message accepted from the child. */
  maxMessageBytes?: number;
  /** The OS sandbox to run the child in; absent or mode none: spawned as is. */
  sandbox?: SandboxSpec;
}

export class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child?: ChildProcess;
  private readonly buffer: ReadBuffer;
  private closed = false;
  private sandboxFailure: string | undefined;
  private spoke = false;
  /** The wait of the sends the child's full stdin holds back: one for all of them, failed if stdin closes first. */
  private drained: Promise<void> | undefined;

  constructor(private readonly spec: ChildSpec) {
    this.buffer = new ReadBuffer({ maxBufferSize: spec.maxMessageBytes ?? 16 * 1024 * 1024 });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** What bwrap said when it could not build the sandbox (its own "bwrap: ..." line), if it did. */
  get failure(): string | undefined {
    return this.sandboxFailure;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error('transport already started');
    const sandbox = this.spec.sandbox;
    // Throws SandboxError (bwrap missing, a path to bind missing): the service does not start.
    const run =
      sandbox?.mode === 'bwrap'
        ? await bwrapCommand(sandbox, this.spec.command, this.spec.args, {
            ...(this.spec.cwd ? { cwd: this.spec.cwd } : {}),
            searchPath: this.spec.env.PATH ?? process.env.PATH ?? '',
          })
        : { command: this.spec.command, args: this.spec.args };
    await new Promise<void>((resolve, reject) => {
      const child = spawn(run.command, run.args, {
        env: this.spec.env,
        cwd: this.spec.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        windowsHide: true,
      });
      this.child = child;
      child.once('error', (err) => {
        reject(err);
        this.onerror?.(err);
      });
      child.once('spawn', () => resolve());
      child.once('close', () => {
        this.child = undefined;
        if (!this.closed) {
          this.closed = true;
          this.onclose?.();
        }
      });
      child.stdin?.on('error', (err) => this.onerror?.(err));
      child.stdout?.on('data', (chunk: Buffer) => {
        try {
          this.buffer.append(chunk);
          for (;;) {
            const msg = this.buffer.readMessage();
            if (msg === null) break;
            this.spoke = true;
            this.onmessage?.(msg);
          }
        } catch (err) {
          // A malformed or oversized frame: the child is not speaking MCP; drop the connection.
          this.onerror?.(err as Error);
          void this.close();
        }
      });
      let partial = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (s: string) => {
        partial += s;
        for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          // Only before the service has said anything: bwrap speaks first, if at all.
          if (sandbox?.mode === 'bwrap' && !this.spoke && line.startsWith('bwrap: ')) this.sandboxFailure = `sandbox failed: ${line.slice(0, 500)}`;
          if (line.trim()) this.spec.onStderr?.(line.slice(0, 2000));
        }
        if (partial.length > 8192) partial = partial.slice(-8192);
      });
    });
  }

  /**
   * Messages sent in one turn of the event loop reach the child in one write: the first corks stdin
   * and a tick later it is uncorked. The calls a group commit makes durable together are forwarded
   * in one burst of microtasks, and each had cost a write system call of its own (and the service a
   * read), ~5% of the gateway's busy CPU at 16 agents; a single call waits only for the end of the
   * microtasks that sent it.
   */
  async send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || this.closed || stdin.destroyed) throw new Error('service process is not running');
    const data = serializeMessage(message);
    if (stdin.writableCorked === 0) {
      stdin.cork();
      process.nextTick(() => stdin.uncork());
    }
    if (!stdin.write(data)) await this.drain(stdin);
  }

  /**
   * Resolves when the child's stdin has taken what it holds back; rejects if the pipe closes first
   * (the child died, or closed its input): a wait for 'drain' alone would never settle then.
   */
  private drain(stdin: Writable): Promise<void> {
    this.drained ??= new Promise<void>((resolve, reject) => {
      const settle = (err?: Error) => {
        stdin.off('drain', onDrain);
        stdin.off('close', onClose);
        this.drained = undefined;
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => settle();
      const onClose = () => settle(new Error('service process closed its input before the message was sent'));
      stdin.on('drain', onDrain);
      stdin.on('close', onClose);
    });
    return this.drained;
  }

  /** Ends the child: close stdin, then SIGTERM, then SIGKILL. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child) {
      if (!this.closed) {
        this.closed = true;
        this.onclose?.();
      }
      return;
    }
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    try {
      child.stdin?.end();
    } catch {
      /* already gone */
    }
    const wait = (ms: number) => Promise.race([exited, new Promise<void>((r) => setTimeout(r, ms).unref())]);
    await wait(1000);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await wait(2000);
    }
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}
