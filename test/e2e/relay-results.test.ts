/**
 * Issue #11 point 2: the first-party services' results validate against the outputSchema they
 * publish, errors included. The SDK 1.x client validates a result's structuredContent against the
 * tool's outputSchema (errors too), so a tool error that carried a success-shaped schema's misfit
 * reached agents as "Structured content does not match the tool's output schema". Real fs and http
 * services (sandboxed) behind a real gateway; the 1.x client and the 2.x client of both eras.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import { TOOL_ERROR_META_KEY } from '../../schemas/contracts/tool-error.js';
import { connect, connectV1, type Gateway, startGateway } from '../helpers/harness.js';
import { addPurposeHosts, copyPolicies, fsService, httpService } from '../helpers/policy.js';

const PURPOSE = 'e2e-loopback';

// The services speak 2026-07-28 when asked (era auto) and 2025 when told to: results keep their shape in both.
for (const serviceEra of ['auto', 'legacy'] as const)
  describe(`first-party tool results validate against their published outputSchema, errors included (service era ${serviceEra})`, () => {
    let gw: Gateway;
    let origin: Server;
    let port = 0;
    let policies: ReturnType<typeof copyPolicies>;

    before(async () => {
      origin = createServer((req, res) => {
        if (req.url === '/binary') res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from([0, 1, 2]));
        else res.writeHead(200, { 'content-type': 'text/plain' }).end('hello from the origin');
      });
      await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
      port = (origin.address() as AddressInfo).port;
      policies = copyPolicies();
      addPurposeHosts(policies, PURPOSE, ['localhost']);
      gw = await startGateway({
        services: { fs: { ...fsService(), era: serviceEra }, http: { ...httpService(port), era: serviceEra } },
        policy: { rego: { dir: policies.rego }, cedar: { dir: policies.cedar } },
      });
    });
    after(async () => {
      await gw?.stop();
      await new Promise<void>((r) => (origin ? origin.close(() => r()) : r()));
      if (policies) rmSync(policies.dir, { recursive: true, force: true });
    });

    const token = () => gw.token({ sub: 'validator', groups: ['eng'], scopes: ['fs:read', 'http:fetch'], purpose: '', purposes: [PURPOSE] });
    const meta = { 'micro-mcp/purpose': PURPOSE };

    test("SDK 1.x: a failing fs.read and http.fetchText return the service's own message and code, not a schema complaint", async () => {
      const client = await connectV1(gw, { token: await token() });
      try {
        // The 1.x client validates against the schemas it saw in tools/list.
        const { tools } = await client.listTools();
        assert.ok(tools.find((t) => t.name === 'fs.read')?.outputSchema, 'fs.read publishes an outputSchema');
        assert.ok(tools.find((t) => t.name === 'http.fetchText')?.outputSchema, 'http.fetchText publishes an outputSchema');

        const missing = await client.callTool({ name: 'fs.read', arguments: { path: '/public/no-such-file.md' } });
        assert.deepEqual(missing, {
          content: [{ type: 'text', text: 'not found' }],
          isError: true,
          _meta: { [TOOL_ERROR_META_KEY]: { code: 'not_found', message: 'not found' } },
        });
        const binary = await client.callTool({ name: 'http.fetchText', arguments: { url: `http://localhost:${port}/binary` }, _meta: meta });
        assert.deepEqual(binary, {
          content: [{ type: 'text', text: 'response refused: not a text content type' }],
          isError: true,
          _meta: { [TOOL_ERROR_META_KEY]: { code: 'content_type', message: 'response refused: not a text content type' } },
        });

        // The controls: successes carry structuredContent, which the 1.x client validated.
        const read = await client.callTool({ name: 'fs.read', arguments: { path: '/public/welcome.txt' } });
        assert.equal(read.isError, undefined);
        assert.equal((read.structuredContent as { path: string }).path, '/public/welcome.txt');
        const fetched = await client.callTool({ name: 'http.fetchText', arguments: { url: `http://localhost:${port}/ok` }, _meta: meta });
        assert.equal((fetched.structuredContent as { text: string }).text, 'hello from the origin');
      } finally {
        await client.close();
      }
    });

    for (const era of ['modern', 'legacy'] as const) {
      test(`SDK 2.x (${era}): every fs error keeps its message; no error result carries structuredContent`, async () => {
        const client = await connect(gw, era, { token: await token() });
        try {
          await client.listTools();
          for (const [path, message] of [
            ['/public/no-such-file.md', 'not found'],
            ['/public', 'path is a directory (use list)'],
            ['/public/faq.md/inner', 'path is not a directory'],
          ] as const) {
            const r = await client.callTool({ name: 'fs.read', arguments: { path } });
            assert.equal(r.isError, true, path);
            assert.deepEqual(r.content, [{ type: 'text', text: message }], path);
            assert.equal(r.structuredContent, undefined, path);
          }
        } finally {
          await client.close();
        }
      });
    }

    test('every success of every fs tool validates against the schema tools/list publishes (ajv, strict)', async () => {
      const client = await connect(gw, 'modern', { token: await token() });
      try {
        const { tools } = await client.listTools();
        const ajv = new Ajv({ strict: false });
        const calls: Array<[string, Record<string, unknown>]> = [
          ['fs.read', { path: '/public/welcome.txt' }],
          ['fs.list', { path: '/public' }],
          ['fs.stat', { path: '/public/faq.md' }],
          ['fs.search', { path: '/public', query: 'the' }],
        ];
        for (const [name, args] of calls) {
          const schema = tools.find((t) => t.name === name)?.outputSchema;
          assert.ok(schema, name);
          const r = await client.callTool({ name, arguments: args });
          assert.notEqual(r.isError, true, `${name}: ${JSON.stringify(r.content)}`);
          const check = ajv.compile(schema);
          assert.ok(check(r.structuredContent), `${name}: ${JSON.stringify(check.errors)}`);
        }
      } finally {
        await client.close();
      }
    });
  });
