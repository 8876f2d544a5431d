/**
 * A `Response.json` for @hono/node-server's lightweight Response. That class (installed as the
 * global Response by getRequestListener) keeps a string body as it is and writes it straight to
 * the socket, but inherits the static `json` of the platform's Response, which builds a full web
 * Response with a ReadableStream body that the listener then reads back chunk by chunk. The SDK
 * answers every 2026-07-28 request with `Response.json(message, ...)`; so does the edge for its own
 * errors. Profiled (1 agent, 2026-07-28, echo): the stream's creation and reading held ~5% of the
 * gateway's CPU. Same answer: the JSON text, the init's status and headers, content-type
 * application/json unless the init names one, a TypeError for a value JSON cannot represent.
 */
export function installResponseJson(R: typeof Response = globalThis.Response): boolean {
  // The platform's own Response defines `json` itself: nothing to do (e.g. tests on app.request).
  if (Object.hasOwn(R, 'json')) return false;
  Object.defineProperty(R, 'json', {
    value: function json(data: unknown, init?: ResponseInit): Response {
      const body = JSON.stringify(data);
      if (body === undefined) throw new TypeError('Response.json: the value cannot be represented as JSON');
      const headers = new Headers(init?.headers);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
      return new R(body, { ...init, headers });
    },
    writable: true,
    configurable: true,
  });
  return true;
}
