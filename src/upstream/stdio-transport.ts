/**
 * A stdio client transport that gives the child exactly the environment its config names.
 *
 * The SDK's StdioClientTransport always merges its "safe default" variables (HOME, PATH, USER, ...)
 * into the child's environment; a least-privilege service must get nothing of the gateway's own
 * environment, so we spawn ourselves. Framing reuses the SDK's ReadBuffer/serializeMessage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ReadBuffer, serializeMessage, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/client';

export interface ChildSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Called with each line the child writes to stderr (operational diagnostics, not protocol). */
  onStderr?: (line: string) => void;
  /** Largest single message accepted from the child. */
  maxMessageBytes?: number;
}

export class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child?: ChildProcess;
  private readonly buffer: ReadBuffer;
  private closed = false;

  constructor(private readonly spec: ChildSpec) {
    this.buffer = new ReadBuffer({ maxBufferSize: spec.maxMessageBytes ?? 16 * 1024 * 1024 });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error('transport already started');
    await new Promise<void>((resolve, reject) => {
      const child = spawn(this.spec.command, this.spec.args, {
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
          if (line.trim()) this.spec.onStderr?.(line.slice(0, 2000));
        }
        if (partial.length > 8192) partial = partial.slice(-8192);
      });
    });
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || this.closed) throw new Error('service process is not running');
    const data = serializeMessage(message);
    if (!stdin.write(data)) await new Promise<void>((r) => stdin.once('drain', () => r()));
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
