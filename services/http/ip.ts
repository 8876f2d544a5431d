/**
 * Address classification for SSRF defence. An address is allowed only when it is ordinary global
 * unicast: loopback, private (RFC 1918, ULA), link-local, CGNAT (100.64/10), multicast, unspecified,
 * broadcast, reserved, documentation/benchmark ranges and cloud-metadata addresses are refused.
 * IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d,
 * NAT64 64:ff9b::/96) are judged by the embedded IPv4 address; 6to4, Teredo and other transition
 * prefixes are refused outright. Decimal/octal/hex IPv4 spellings never reach this module: the
 * WHATWG URL parser canonicalises them to dotted decimal first, and resolver answers are checked
 * with `net.isIP` before use.
 */
import { isIP } from 'node:net';

type V4Range = [number, number, string]; // network (uint32), prefix length, reason

const V4_BLOCKED: V4Range[] = [
  [v4('0.0.0.0'), 8, 'unspecified / this-network'],
  [v4('10.0.0.0'), 8, 'private'],
  [v4('100.64.0.0'), 10, 'carrier-grade NAT (also cloud metadata 100.100.100.200)'],
  [v4('127.0.0.0'), 8, 'loopback'],
  [v4('169.254.0.0'), 16, 'link-local (cloud metadata 169.254.169.254)'],
  [v4('172.16.0.0'), 12, 'private'],
  [v4('192.0.0.0'), 24, 'IETF protocol assignments'],
  [v4('192.0.2.0'), 24, 'documentation'],
  [v4('192.88.99.0'), 24, '6to4 relay anycast'],
  [v4('192.168.0.0'), 16, 'private'],
  [v4('198.18.0.0'), 15, 'benchmarking'],
  [v4('198.51.100.0'), 24, 'documentation'],
  [v4('203.0.113.0'), 24, 'documentation'],
  [v4('224.0.0.0'), 4, 'multicast'],
  [v4('240.0.0.0'), 4, 'reserved / broadcast'],
  [v4('168.63.129.16'), 32, 'cloud metadata (Azure wire server)'],
];

function v4(s: string): number {
  const p = s.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** Why an IPv4 address (uint32) is refused, or undefined when it is global unicast. */
function v4Reason(a: number): string | undefined {
  for (const [net, len, reason] of V4_BLOCKED) {
    const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
    if ((a & mask) >>> 0 === net) return reason;
  }
  return undefined;
}

/** Parses a textual IPv6 address (no zone id) into 8 16-bit groups. */
export function parseV6(s: string): number[] | undefined {
  if (s.includes('%')) return undefined;
  let tail: number[] = [];
  let str = s;
  const lastColon = str.lastIndexOf(':');
  const maybeV4 = str.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    if (isIP(maybeV4) !== 4) return undefined;
    const n = v4(maybeV4);
    tail = [n >>> 16, n & 0xffff];
    str = str.slice(0, lastColon + 1) + '0:0'; // placeholder groups, replaced below
  }
  const halves = str.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string) => (h === '' ? [] : h.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? head.length !== 8 : fill < 1) return undefined;
  const groups = halves.length === 1 ? head : [...head, ...new Array<number>(fill).fill(0), ...rest];
  if (groups.some((g) => Number.isNaN(g))) return undefined;
  if (tail.length === 2) {
    groups[6] = tail[0]!;
    groups[7] = tail[1]!;
  }
  return groups;
}

/** Why an IPv6 address is refused, or undefined when it is global unicast. */
function v6Reason(g: number[]): string | undefined {
  const embedded = (((g[6]! << 16) | g[7]!) >>> 0) as number;
  const zeros = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeros(8)) return 'unspecified';
  if (zeros(7) && g[7] === 1) return 'loopback';
  if (zeros(5) && g[5] === 0xffff) return v4Reason(embedded) ? `IPv4-mapped ${v4Reason(embedded)}` : undefined;
  if (zeros(6)) return 'IPv4-compatible (deprecated)';
  if (zeros(4) && g[4] === 0xffff && g[5] === 0) return 'IPv4-translated';
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return v4Reason(embedded) ? `NAT64 ${v4Reason(embedded)}` : undefined;
  const first = g[0]!;
  if ((first & 0xe000) !== 0x2000) {
    if ((first & 0xfe00) === 0xfc00) return 'unique local (private; includes AWS metadata fd00:ec2::254)';
    if ((first & 0xffc0) === 0xfe80) return 'link-local';
    if ((first & 0xffc0) === 0xfec0) return 'site-local';
    if ((first & 0xff00) === 0xff00) return 'multicast';
    return 'not global unicast';
  }
  if (first === 0x2001 && g[1]! < 0x200) return 'IETF special purpose (Teredo, ORCHID, ...)';
  if (first === 0x2001 && g[1] === 0x0db8) return 'documentation';
  if (first === 0x2002) return '6to4';
  if (first === 0x3fff && g[1]! < 0x1000) return 'documentation';
  return undefined;
}

/** Why `address` (a literal IPv4 or IPv6 address) must not be connected to, or undefined if it may. */
export function blockedReason(address: string): string | undefined {
  const fam = isIP(address);
  if (fam === 4) return v4Reason(v4(address));
  if (fam === 6) {
    const g = parseV6(address);
    return g ? v6Reason(g) : 'unparseable IPv6 address';
  }
  return 'not an IP address';
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (what test mode may reach). */
export function isLoopback(address: string): boolean {
  const fam = isIP(address);
  if (fam === 4) return address.startsWith('127.');
  if (fam === 6) {
    const g = parseV6(address);
    if (!g) return false;
    if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return true;
    return g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff && g[6]! >>> 8 === 127;
  }
  return false;
}
