/**
 * Issue #11 point 6: the connect lines a dev-mode gateway prints work as written. The token line is
 * run through a shell exactly as printed (any port: its audience names the gateway's), its token lets
 * the 1.x SDK client list and call tools, and the Inspector line pins the version the README checked.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { eventually, type Gateway, ROOT, startGateway } from '../helpers/harness.js';
import { fsService } from '../helpers/policy.js';

const run = promisify(execFile);

describe('the printed connect lines', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ services: { fs: fsService() } });
    // The help follows the "listening" line; wait until it has arrived.
    await eventually(() => /--method tools\/list\n/.test(gw.output()));
  });
  after(async () => {
    await gw?.stop();
  });

  test('the token line mints a token for this gateway, and an SDK client connects with it', async () => {
    const line = /^ {2}(TOKEN=\$\(node dist\/src\/cli\/main\.js token .*\))$/m.exec(gw.output())?.[1];
    assert.ok(line, gw.output());
    assert.match(line, new RegExp(`--aud ${gw.mcpUrl.replace(/[.]/g, '\\.')}\\)$`));
    // As printed, from the installation folder; the test gateway's dev key lives in its own folder.
    const { stdout } = await run('sh', ['-c', `${line}; printf %s "$TOKEN"`], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', MICRO_MCP_DEV_KEY_DIR: path.join(gw.dir, 'keys') },
    });
    const client = new Client({ name: 'connect-line', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(gw.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${stdout}` } } }));
    try {
      // The printed token is alice of group eng with fs:read: the example policies let her read /eng.
      assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), ['fs.list', 'fs.read', 'fs.search', 'fs.stat']);
      const r = await client.callTool({ name: 'fs.read', arguments: { path: '/eng/runbook.md' } });
      assert.match((r.content as Array<{ text: string }>)[0]!.text, /^# On-call runbook\n/);
    } finally {
      await client.close();
    }
  });

  test('the Inspector line pins the checked version and names this gateway', () => {
    assert.match(
      gw.output(),
      new RegExp(
        `^ {2}npx -y @modelcontextprotocol/inspector@2\\.12\\.0 --cli --transport http --server-url ${gw.mcpUrl.replace(/[.]/g, '\\.')} --header "Authorization: Bearer \\$TOKEN" --method tools/list$`,
        'm',
      ),
    );
  });
});
