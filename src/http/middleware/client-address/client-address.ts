import { BlockList, isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';
import type { GatewayEnv } from '../../context.js';

export interface ClientAddressOptions {
  /** Addresses or CIDR ranges of proxies in front of the gateway (nginx, a load balancer) whose X-Forwarded-For is believed. */
  trustedProxies: readonly string[];
}

/** `::ffff:127.0.0.1` (a dual-stack socket's view of an IPv4 peer) is 127.0.0.1. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The caller's address (`c.get('clientIp')`), which per-address limits, audit records and policies see:
 * the socket's peer, unless that peer is a trusted proxy; then the nearest X-Forwarded-For entry that
 * is not a trusted proxy (walking from the right, as each proxy appends). An untrusted peer's
 * X-Forwarded-For is ignored: anyone can write one. Bad entries in the list are refused when built.
 */
export const clientAddress = (opts: ClientAddressOptions): MiddlewareHandler<GatewayEnv> => {
  const trusted = new BlockList();
  for (const entry of opts.trustedProxies) {
    const [addr, bits] = entry.split('/') as [string, string | undefined];
    const family = isIP(addr);
    if (family === 0 || (bits !== undefined && !/^\d{1,3}$/.test(bits))) throw new Error(`trusted_proxies: "${entry}" is not an address or CIDR range`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) trusted.addAddress(addr, type);
    else trusted.addSubnet(addr, Number(bits), type);
  }
  const isTrusted = (a: string) => {
    const f = isIP(a);
    return f !== 0 && trusted.check(a, f === 4 ? 'ipv4' : 'ipv6');
  };
  return async function clientAddress(c, next) {
    const socketPeer = c.env?.incoming?.socket.remoteAddress;
    let ip = socketPeer === undefined ? null : plain(socketPeer);
    if (ip !== null && opts.trustedProxies.length > 0 && isTrusted(ip)) {
      const chain = (c.req.header('x-forwarded-for') ?? '')
        .split(',')
        .map((s) => plain(s.trim()))
        .filter((s) => s !== '');
      for (let i = chain.length - 1; i >= 0; i--) {
        const hop = chain[i]!;
        if (isIP(hop) === 0) break;
        ip = hop;
        if (!isTrusted(hop)) break;
      }
    }
    c.set('clientIp', ip);
    await next();
  };
};
