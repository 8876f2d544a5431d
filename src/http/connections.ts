/**
 * Connections from one client address cost little and cannot crowd out others: a ceiling per
 * address (and in all), applied when the socket is accepted, before a byte is parsed. Refused
 * sockets are closed at once and reported (the audit aggregates a flood).
 */
import type { Server } from 'node:http';
import type { Holdings } from '../limits/keyed.js';

export function limitConnections(
  server: Server,
  holdings: Holdings,
  onRefused: (clientIp: string, limit: 'max_connections_per_ip' | 'max_connections') => void,
): void {
  server.on('connection', (socket) => {
    const ip = socket.remoteAddress ?? 'unknown';
    const held = holdings.take(ip);
    if ('refused' in held) {
      socket.destroy();
      onRefused(ip, held.refused === 'per_key' ? 'max_connections_per_ip' : 'max_connections');
      return;
    }
    socket.once('close', held.release);
  });
}
