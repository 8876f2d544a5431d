/**
 * Reads a byte stream into one buffer, refusing it as soon as it exceeds a cap: a lying or absent
 * Content-Length cannot get past it, and nothing beyond the cap is buffered. One reader for every
 * stream the gateway takes in whole (request bodies, key sets fetched from an issuer).
 *
 * Pass an iterator that does not destroy its source when the loop stops early
 * (`incoming.iterator({ destroyOnReturn: false })`, `stream.values({ preventCancel: true })`) when the
 * caller still needs the connection, e.g. to answer 413 on it.
 */
export async function readCapped(chunks: AsyncIterable<Uint8Array>, max: number): Promise<Buffer | 'too_large'> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.byteLength;
    if (size > max) return 'too_large';
    parts.push(chunk);
  }
  return parts.length === 1 ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.byteLength) : Buffer.concat(parts);
}
