// Unit tables for the address guard: every range, its exact reason, and the IPv6 forms that embed
// an IPv4 address. No sockets: classification only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { blockedReason, isLoopback } from './ip.js';

const REFUSED: [string, string][] = [
  ['0.0.0.0', 'unspecified / this-network'],
  ['10.255.255.255', 'private'],
  ['100.64.0.0', 'carrier-grade NAT (also cloud metadata 100.100.100.200)'],
  ['100.100.100.200', 'carrier-grade NAT (also cloud metadata 100.100.100.200)'],
  ['127.53.0.1', 'loopback'],
  ['169.254.169.254', 'link-local (cloud metadata 169.254.169.254)'],
  ['172.31.255.255', 'private'],
  ['192.0.0.8', 'IETF protocol assignments'],
  ['192.0.2.1', 'documentation'],
  ['192.88.99.1', '6to4 relay anycast'],
  ['192.168.1.1', 'private'],
  ['198.19.255.255', 'benchmarking'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['239.255.255.250', 'multicast'],
  ['255.255.255.255', 'reserved / broadcast'],
  ['168.63.129.16', 'cloud metadata (Azure wire server)'],
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
  ['::ffff:a9fe:a9fe', 'IPv4-mapped link-local (cloud metadata 169.254.169.254)'],
  ['0:0:0:0:0:FFFF:A00:1', 'IPv4-mapped private'],
  ['::ffff:168.63.129.16', 'IPv4-mapped cloud metadata (Azure wire server)'],
  ['::127.0.0.1', 'IPv4-compatible (deprecated)'],
  ['::5db8:d822', 'IPv4-compatible (deprecated)'],
  ['::ffff:0:5db8:d822', 'IPv4-translated'],
  ['64:ff9b::a9fe:a9fe', 'NAT64 link-local (cloud metadata 169.254.169.254)'],
  ['64:ff9b::127.0.0.1', 'NAT64 loopback'],
  ['64:ff9b:1::5db8:d822', 'not global unicast'],
  ['fd00:ec2::254', 'unique local (private; includes AWS metadata fd00:ec2::254)'],
  ['fc00::1', 'unique local (private; includes AWS metadata fd00:ec2::254)'],
  ['fe80::abcd', 'link-local'],
  ['fec0::1', 'site-local'],
  ['ff02::1', 'multicast'],
  ['1fff:ffff::1', 'not global unicast'],
  ['4000::1', 'not global unicast'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'IETF special purpose (Teredo, ORCHID, ...)'],
  ['2001:1ff::1', 'IETF special purpose (Teredo, ORCHID, ...)'],
  ['2001:db8::1', 'documentation'],
  ['3fff:fff::1', 'documentation'],
  ['2002:7f00:1::', '6to4'],
  ['fe80::1%eth0', 'unparseable IPv6 address'],
  ['127.1', 'not an IP address'],
  ['localhost', 'not an IP address'],
];

const ALLOWED = [
  '93.184.216.34',
  '8.8.8.8',
  '100.63.255.255',
  '100.128.0.0',
  '172.32.0.1',
  '198.20.0.1',
  '168.63.129.17',
  '223.255.255.255',
  '2606:4700::1111',
  '2001:200::1',
  '3fff:1000::1',
  '2000::1',
  '3fff:ffff::1',
  '::ffff:93.184.216.34',
  '::ffff:5db8:d822',
  '64:ff9b::5db8:d822',
  '64:ff9b::8.8.8.8',
];

test('every refused range answers with its reason', () => {
  for (const [address, reason] of REFUSED) assert.equal(blockedReason(address), reason, address);
});

test('global unicast passes, also behind the IPv4-mapped and NAT64 prefixes', () => {
  for (const address of ALLOWED) assert.equal(blockedReason(address), undefined, address);
});

test('loopback for test mode: 127/8, ::1 and IPv4-mapped 127/8 only', () => {
  for (const a of ['127.0.0.1', '127.255.255.255', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:7f00:1']) assert.equal(isLoopback(a), true, a);
  for (const a of ['128.0.0.1', '10.0.0.1', '::', '::2', '::127.0.0.1', '64:ff9b::127.0.0.1', '::ffff:0:7f00:1', '::1%lo', 'localhost'])
    assert.equal(isLoopback(a), false, a);
});

test('why IPv4 and IPv6 rules are kept apart: Node matches across families through ::ffff:', () => {
  // If this ever stops holding, the separation is merely redundant, not wrong.
  const v6 = new BlockList();
  v6.addSubnet('::', 3, 'ipv6');
  assert.equal(v6.check('8.8.8.8', 'ipv4'), true);
  const v4 = new BlockList();
  v4.addSubnet('127.0.0.0', 8, 'ipv4');
  assert.equal(v4.check('::ffff:127.0.0.1', 'ipv6'), true);
  assert.equal(v4.check('64:ff9b::127.0.0.1', 'ipv6'), false, 'BlockList knows nothing of NAT64');
});
