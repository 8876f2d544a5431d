/**
 * Text vs binary detection shared by the services: content is reported as binary (and not dumped)
 * when it contains a NUL byte or is not valid in its declared encoding (UTF-8 by default).
 */

/** Decodes `buf` as text, or returns undefined when it looks binary. A multi-byte character cut at
 * either end of the window (reads with offset/length) is tolerated and dropped. */
export function decodeTextOrBinary(buf: Uint8Array, encoding = 'utf-8', trimEdges = false): string | undefined {
  if (buf.includes(0)) return undefined;
  let view = buf;
  if (trimEdges && encoding === 'utf-8') {
    let start = 0;
    while (start < 3 && start < view.length && (view[start]! & 0xc0) === 0x80) start++;
    view = view.subarray(start);
  }
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(encoding, { fatal: true });
  } catch {
    decoder = new TextDecoder('utf-8', { fatal: true });
  }
  try {
    // stream: true keeps an incomplete trailing sequence pending instead of failing on it.
    return trimEdges ? decoder.decode(view, { stream: true }) : decoder.decode(view);
  } catch {
    return undefined;
  }
}
