/** Summarises a V8 .cpuprofile: heaviest self-time functions, and self time per package / module. */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (this file runs from dist/test/bench). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of samples in which the thread was idle (waiting on I/O). */
  idlePct: number;
  functions: SelfTime[];
  areas: SelfTime[];
  /** Coarse buckets (policy, SDK, HTTP, audit, ...); native frames count for their JS caller. */
  buckets: SelfTime[];
}

/** Which part of the gateway an area belongs to, for the coarse table. */
export function bucketOf(area: string): string {
  if (area === '(garbage collector)') return 'garbage collection';
  if (/^wasm:|^@cedar-policy|^@open-policy-agent|^src\/policy\//.test(area)) return 'policy engines (Cedar, OPA WASM) and input';
  if (/^@modelcontextprotocol|^zod$|^ajv/.test(area)) return 'MCP SDK (protocol, zod/ajv validation)';
  if (/^src\/audit\/|^src\/canonical|^node:fs|^pino|^sonic-boom|^fast-redact/.test(area)) return 'audit (records, hash chain, file)';
  if (/^jose$|^src\/auth\/|^node:crypto/.test(area)) return 'auth and per-call credentials (jose, crypto)';
  if (/^src\/(http|mcp-face|pipeline|upstream|limits)\/|^src\/(errors|clock|read-capped)/.test(area))
    return 'gateway data path (edge, MCP face, pipeline, upstream)';
  if (
    /^hono$|^@hono|^node:(events|_http|http|undici|webstreams|net|stream|streams|url|abort_controller|event_target|worker|buffer|dns|timers|process)/.test(area)
  )
    return 'HTTP, streams, events (node, undici, hono)';
  return `other (${area})`;
}

const PSEUDO = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** Where a script lives, short: "pkg @scope/name", "src/audit/sink.js", "node:internal/…". */
export function areaOf(url: string, fn: string): string {
  if (url === '') return PSEUDO.has(fn) ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const ours = /\/dist\/((?:src|test|services)\/.*)$/.exec(url);
  if (ours) return ours[1]!;
  // A TypeScript source a bundle's source map names (see located).
  if (url.startsWith(`${ROOT}${path.sep}`)) return path.relative(ROOT, url);
  if (url.startsWith('node:'))
    return url
      .replace(/^node:internal\/(?:deps\/)?/, 'node:')
      .split('/')
      .slice(0, 2)
      .join('/');
  return url;
}

/**
 * A frame as its source names it: the gateway's command runs bundled (bin/bundle.mjs), so a frame in
 * dist/chunks/ is mapped through the chunk's source map (which esbuild chained to tsc's maps and the
 * packages' own) to the TypeScript or package file it came from. Other frames are kept as they are.
 */
function locator(): (cf: ProfileNode['callFrame']) => ProfileNode['callFrame'] {
  const maps = new Map<string, SourceMap | null>();
  return (cf) => {
    if (!cf.url.startsWith('file://') || cf.lineNumber < 0) return cf;
    let map = maps.get(cf.url);
    if (map === undefined) {
      const file = fileURLToPath(cf.url);
      map = existsSync(`${file}.map`) ? new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8'))) : null;
      maps.set(cf.url, map);
    }
    const at = map?.findEntry(cf.lineNumber, Math.max(0, cf.columnNumber));
    if (at === undefined || !('originalSource' in at)) return cf;
    const source = path.resolve(path.dirname(fileURLToPath(cf.url)), at.originalSource);
    return { ...cf, url: source, lineNumber: at.originalLine };
  };
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const locate = locator();
  for (const n of p.nodes) n.callFrame = locate(n.callFrame);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** The area of the nearest ancestor that is JavaScript (or WASM) with a script URL. */
  const callerArea = (id: number): string => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (cf.url !== '') return areaOf(cf.url, cf.functionName);
    }
    return '(native)';
  };
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the gap before sample i; the time a sample stands for is the gap after it.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + Math.max(0, dt));
  }
  let total = 0;
  let idle = 0;
  const fns = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  const buckets = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!.callFrame;
    total += us;
    if (cf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const name = cf.functionName || '(anonymous)';
    const area = areaOf(cf.url, name);
    const where = cf.url === '' ? area : `${area}:${cf.lineNumber + 1}`;
    const key = `${name}\u0000${where}`;
    const f = fns.get(key) ?? { name, where, us: 0 };
    f.us += us;
    fns.set(key, f);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const b = bucketOf(area === '(native)' ? callerArea(id) : area);
    buckets.set(b, (buckets.get(b) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number) => (busy > 0 ? (100 * us) / busy : 0);
  return {
    totalMs: total / 1000,
    idlePct: total > 0 ? (100 * idle) / total : 0,
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, ms: f.us / 1000, pct: pct(f.us) })),
    areas: [...areas]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([a, us]) => ({ name: a, where: '', ms: us / 1000, pct: pct(us) })),
    buckets: [...buckets].sort((a, b) => b[1] - a[1]).map(([a, us]) => ({ name: a, where: '', ms: us / 1000, pct: pct(us) })),
  };
}
