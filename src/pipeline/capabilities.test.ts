import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientCapabilities } from '@modelcontextprotocol/server';
import { missingCapability, relayedCapabilities } from './capabilities.js';

describe("capabilities are the agent's", () => {
  it('relays elicitation modes and sampling, never roots, experimental or tasks', () => {
    assert.deepEqual(relayedCapabilities(undefined), {});
    assert.deepEqual(relayedCapabilities({ roots: { listChanged: true }, experimental: { x: {} } }), {});
    assert.deepEqual(relayedCapabilities({ elicitation: {} }), { elicitation: { form: {} } }, 'a bare elicitation is form mode');
    assert.deepEqual(relayedCapabilities({ elicitation: { url: {} } }), { elicitation: { url: {} } });
    assert.deepEqual(relayedCapabilities({ elicitation: { form: {}, url: {} }, sampling: { tools: {} } }), {
      elicitation: { form: {}, url: {} },
      sampling: { tools: {} },
    });
  });
  it('names what an input request needs and the agent lacks', () => {
    const form = { method: 'elicitation/create', params: { mode: 'form', message: 'm', requestedSchema: { type: 'object', properties: {} } } };
    const url = { method: 'elicitation/create', params: { mode: 'url', message: 'm', url: 'https://x.test', elicitationId: 'e' } };
    const sampling = { method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } };
    assert.equal(missingCapability({}, form), 'elicitation (form mode)');
    assert.equal(missingCapability({ elicitation: { form: {} } }, form), undefined);
    assert.equal(missingCapability({ elicitation: { form: {} } }, url), 'elicitation (url mode)');
    assert.equal(missingCapability({ elicitation: { form: {} } }, sampling), 'sampling');
    assert.equal(missingCapability({ sampling: {} }, sampling), undefined);
    assert.equal(missingCapability({ sampling: {} }, { method: 'roots/list' }), 'roots');
    assert.equal(missingCapability({ roots: {} }, { method: 'roots/list' }), undefined);
    assert.equal(missingCapability({ roots: {} }, { method: 'ping' }), 'ping', 'anything else is not an input request');
  });
  it('relays roots only where the service forwards them, to an agent that declared them, without listChanged', () => {
    const declared = { roots: { listChanged: true }, elicitation: { form: {} } };
    assert.deepEqual(relayedCapabilities(declared), { elicitation: { form: {} } }, 'off by default');
    assert.deepEqual(relayedCapabilities(declared, { roots: false }), { elicitation: { form: {} } });
    assert.deepEqual(relayedCapabilities(declared, { roots: true }), { elicitation: { form: {} }, roots: {} });
    assert.deepEqual(relayedCapabilities({ roots: {} }, { roots: true }), { roots: {} });
    assert.deepEqual(relayedCapabilities({ sampling: {} }, { roots: true }), { sampling: {} }, 'an agent without roots: none relayed');
    assert.deepEqual(relayedCapabilities(undefined, { roots: true }), {});
    // Only an object declares the capability (the schema's shape); anything else is not roots.
    const wire: ClientCapabilities = JSON.parse('{"roots": true}');
    assert.deepEqual(relayedCapabilities(wire, { roots: true }), {});
    // What the service sees of roots is a fresh object: nothing the agent put inside travels on.
    const agents = { roots: { listChanged: true } };
    const seen = relayedCapabilities(agents, { roots: true });
    assert.notEqual(seen.roots, agents.roots);
    assert.deepEqual(agents.roots, { listChanged: true }, "the agent's own declaration is left as it was");
  });
});
