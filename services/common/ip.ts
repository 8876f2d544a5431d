/**
 * Address classification for SSRF defence. An address is allowed only when it is ordinary global
 * unicast: loopback, private (RFC 1918, ULA), link-local, CGNAT (100.64/10), multicast, unspecified,
 * broadcast, reserved, documentation/benchmark ranges and cloud-metadata addresses are refused.
 * IPv6 forms that carry an IPv4 address to an IPv4 host (IPv4-mapped ::ffff:a.b.c.d, NAT64
 * 64:ff9b::/96) are judged by the embedded IPv4 address; IPv4-compatible (::a.b.c.d),
 * IPv4-translated, 6to4, Teredo and anything outside 2000::/3 are refused outright. Decimal/octal/hex
 * IPv4 spellings never reach this module: the WHATWG URL parser canonicalises them to dotted decimal
 * first, and resolver answers are checked with `net.isIP` before use.
 *
 * The ranges are `net.BlockList`s built once at load, one per reason. IPv4 and IPv6 rules are kept
 * apart on purpose: Node 20 matches an IPv4 address against an IPv6 rule through its ::ffff: form
 * (and an IPv4 rule against ::ffff: IPv6 addresses), so an IPv6 rule such as ::/3 would catch every
 * IPv4 address. IPv4 addresses meet only IPv4 rules; the IPv6 rules for the IPv4-mapped and NAT64
 * prefixes are derived from the IPv4 table, so an embedded address is judged by the same table as a
 * plain one (BlockList itself knows nothing of NAT64).
 */
import { BlockList, isIP } from 'node:net';

type Family = 'ipv4' | 'ipv6';

/** Refused IPv4 ranges and why. The ranges do not overlap, so their order does not matter. */
const V4_REFUSED: readonly (readonly [cidr: string, reason: string])[] = [
  ['0.0.0.0/8', 'unspecified / this-network'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'carrier-grade NAT (also cloud metadata 100.100.100.200)'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local (cloud metadata 169.254.169.254)'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'IETF protocol assignments'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', '6to4 relay anycast'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved / broadcast'],
  ['168.63.129.16/32', 'cloud metadata (Azure wire server)'],
];

const LOOPBACK_V4 = '127.0.0.0/8';
const MAPPED = '::ffff:';
const NAT64 = '64:ff9b::';

/** A set of ranges and why they are refused; `undefined`: allowed, and no later rule applies. */
interface Rule {
  ranges: BlockList;
  reason: string | undefined;
}

function blockList(family: Family, cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, len] = cidr.split('/');
    list.addSubnet(net!, Number(len), family);
  }
  return list;
}

/** An IPv4 range inside an IPv6 /96 prefix: ("::ffff:", "10.0.0.0/8") -> "::ffff:10.0.0.0/104". */
function embed(prefix: string, v4cidr: string): string {
  const [net, len] = v4cidr.split('/');
  return `${prefix}${net}/${96 + Number(len)}`;
}

/** One rule per reason of the IPv4 table, optionally moved under an IPv6 /96 prefix. */
function v4Rules(under?: { prefix: string; label: string }): Rule[] {
  const byReason = new Map<string, string[]>();
  for (const [cidr, reason] of V4_REFUSED) byReason.set(reason, [...(byReason.get(reason) ?? []), cidr]);
  return [...byReason].map(([reason, cidrs]) =>
    under === undefined
      ? { ranges: blockList('ipv4', cidrs), reason }
      : {
          ranges: blockList(
            'ipv6',
            cidrs.map((c) => embed(under.prefix, c)),
          ),
          reason: `${under.label} ${reason}`,
        },
  );
}

const V4_RULES: readonly Rule[] = v4Rules();

/** IPv6 rules; the first that matches decides (the prefixes nest, so the order matters). */
const V6_RULES: readonly Rule[] = [
  { ranges: blockList('ipv6', ['::/128']), reason: 'unspecified' },
  { ranges: blockList('ipv6', ['::1/128']), reason: 'loopback' },
  ...v4Rules({ prefix: MAPPED, label: 'IPv4-mapped' }),
  { ranges: blockList('ipv6', [`${MAPPED}0:0/96`]), reason: undefined }, // a global IPv4 address
  { ranges: blockList('ipv6', ['::/96']), reason: 'IPv4-compatible (deprecated)' },
  { ranges: blockList('ipv6', ['::ffff:0:0:0/96']), reason: 'IPv4-translated' },
  ...v4Rules({ prefix: NAT64, label: 'NAT64' }),
  { ranges: blockList('ipv6', [`${NAT64}/96`]), reason: undefined }, // a global IPv4 address
  { ranges: blockList('ipv6', ['fc00::/7']), reason: 'unique local (private; includes AWS metadata fd00:ec2::254)' },
  { ranges: blockList('ipv6', ['fe80::/10']), reason: 'link-local' },
  { ranges: blockList('ipv6', ['fec0::/10']), reason: 'site-local' },
  { ranges: blockList('ipv6', ['ff00::/8']), reason: 'multicast' },
  { ranges: blockList('ipv6', ['::/3', '4000::/2', '8000::/1']), reason: 'not global unicast' }, // all but 2000::/3
  { ranges: blockList('ipv6', ['2001::/23']), reason: 'IETF special purpose (Teredo, ORCHID, ...)' },
  { ranges: blockList('ipv6', ['2001:db8::/32', '3fff::/20']), reason: 'documentation' },
  { ranges: blockList('ipv6', ['2002::/16']), reason: '6to4' },
];

const LOOPBACK: Record<Family, BlockList> = {
  ipv4: blockList('ipv4', [LOOPBACK_V4]),
  ipv6: blockList('ipv6', ['::1/128', embed(MAPPED, LOOPBACK_V4)]),
};

/** The family of a literal address BlockList can judge; undefined for anything else. */
function family(address: string): Family | undefined {
  const fam = isIP(address);
  if (fam === 4) return 'ipv4';
  // BlockList ignores a zone id ("fe80::1%eth0"); such an address is refused as unparseable.
  if (fam === 6 && !address.includes('%')) return 'ipv6';
  return undefined;
}

/** Why `address` (a literal IPv4 or IPv6 address) must not be connected to, or undefined if it may. */
export function blockedReason(address: string): string | undefined {
  const fam = family(address);
  if (fam === undefined) return isIP(address) === 6 ? 'unparseable IPv6 address' : 'not an IP address';
  return (fam === 'ipv4' ? V4_RULES : V6_RULES).find((r) => r.ranges.check(address, fam))?.reason;
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (what test mode may reach). */
export function isLoopback(address: string): boolean {
  const fam = family(address);
  return fam !== undefined && LOOPBACK[fam].check(address, fam);
}
