import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
    assert.equal(missingCapability({ sampling: {} }, { method: 'roots/list' }), 'roots/list');
  });
});
