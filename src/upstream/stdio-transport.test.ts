import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JSONRPCMessage } from '@modelcontextprotocol/client';
import { ChildProcessTransport } from './stdio-transport.js';

test('a send held back by a full stdin fails when the child dies, as do the sends waiting with it; later sends fail at once', async () => {
  // A child that never reads its stdin: a 1 MiB message fills the pipe and the stream's buffer.
  const t = new ChildProcessTransport({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], env: {} });
  await t.start();
  const closed = new Promise<void>((resolve) => {
    t.onclose = resolve;
  });
  const big: JSONRPCMessage = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x'.repeat(1 << 20) } };
  const settled = (p: Promise<void>) =>
    p.then(
      () => 'sent',
      (e: Error) => e.message,
    );
  const first = settled(t.send(big));
  const second = settled(t.send(big));
  const pid = t.pid;
  assert.ok(pid !== undefined);
  process.kill(pid, 'SIGKILL');
  // The child's close comes after its stdin's; one turn later every reaction to it has run.
  const afterClose = closed.then(() => new Promise<string>((resolve) => setImmediate(() => resolve('still waiting'))));
  const message = 'service process closed its input before the message was sent';
  assert.equal(await Promise.race([first, afterClose]), message);
  assert.equal(await Promise.race([second, afterClose]), message);
  await assert.rejects(t.send(big), { message: 'service process is not running' });
});
