/**
 * Pinned tool definitions (issue #14): a tool's definition (name, description, schemas,
 * annotations: everything the service lists) is hashed on first sight and pinned in a file beside
 * the config. A later, different definition is quarantined (hidden from lists, calls refused with
 * tool_definition_changed) until an operator approves it (`micro-mcp tools approve SERVICE.TOOL`,
 * `tools diff` shows what changed). A service cannot turn a reviewed tool into a prompt injection
 * after the fact. The gateway and the CLI share the file; the gateway reloads it when it changes.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { canonicalJson, sha256 } from '../canonical.js';
import { GatewayError } from '../errors.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../types.js';

/** One pinned tool: the definition approved (first seen, or approved since) and a different one seen after it. */
export interface Pin {
  hash: string;
  definition: Record<string, unknown>;
  pinned_at: string;
  /** A definition the service listed since that differs from the pinned one: quarantined until approved. */
  pending?: { hash: string; definition: Record<string, unknown>; seen_at: string };
}

interface PinFile {
  version: 1;
  tools: Record<string, Pin>;
}

/** The pin file of a config: `tools.pins_file`, relative to the config file's folder. */
export function pinsFile(config: Pick<Config, 'source' | 'tools'>): string {
  return resolve(dirname(config.source), config.tools.pins_file);
}

/** How a listed definition compares with its pin. */
export type PinState = { state: 'pinned' | 'new'; hash: string } | { state: 'changed'; hash: string; pinned: string };

/** The hash a tool's definition is pinned by: sha256 over its canonical JSON, as the service lists it. */
export const definitionHash = (def: unknown): string => sha256(canonicalJson(def));

function parse(text: string, file: string): PinFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new GatewayError('ERR_CONFIG_INVALID', `${file}: the tool pin file is not JSON`);
  }
  const d = doc as Partial<PinFile> | null;
  if (d === null || typeof d !== 'object' || d.version !== 1 || typeof d.tools !== 'object' || d.tools === null || Array.isArray(d.tools))
    throw new GatewayError('ERR_CONFIG_INVALID', `${file}: the tool pin file is not a version 1 pin file`);
  for (const [name, p] of Object.entries(d.tools)) {
    if (typeof p !== 'object' || p === null || typeof p.hash !== 'string' || typeof p.definition !== 'object' || p.definition === null)
      throw new GatewayError('ERR_CONFIG_INVALID', `${file}: the pin of ${name} is malformed`);
  }
  return d as PinFile;
}

/** Reads a pin file; a missing file is an empty one, an unreadable one refuses (fail closed). */
export function readPins(file: string): PinFile {
  if (!existsSync(file)) return { version: 1, tools: {} };
  return parse(readFileSync(file, 'utf8'), file);
}

/** Writes a pin file atomically (a reader never sees half of it). */
export function writePins(file: string, doc: PinFile): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** The gateway's view of the pin file: checks listed definitions, pins new ones, records changes. */
export class ToolPins {
  #doc: PinFile;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** What this process wrote last, so that its own writes do not count as an operator's change. */
  #written = '';
  /** Changed since the last write: written once per catalog rebuild (a service with many tools costs one write). */
  #dirty = false;

  constructor(
    readonly file: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.#doc = readPins(file);
  }

  /** Compares one listed definition with its pin; pins it on first sight, records a different one as pending. */
  check(name: string, definition: Record<string, unknown>): PinState {
    const hash = definitionHash(definition);
    const pin = this.#doc.tools[name];
    const at = new Date(this.now()).toISOString();
    if (pin === undefined) {
      this.#doc.tools[name] = { hash, definition, pinned_at: at };
      this.#dirty = true;
      return { state: 'new', hash };
    }
    if (pin.hash === hash) {
      if (pin.pending !== undefined) {
        // The service went back to the approved definition: nothing is pending any more.
        delete pin.pending;
        this.#dirty = true;
      }
      return { state: 'pinned', hash };
    }
    if (pin.pending?.hash !== hash) {
      pin.pending = { hash, definition, seen_at: at };
      this.#dirty = true;
      this.log.warn(
        { tool: name, pinned: pin.hash, listed: hash },
        'tool definition changed since it was pinned: quarantined until approved (micro-mcp tools approve)',
      );
    }
    return { state: 'changed', hash, pinned: pin.hash };
  }

  /** Calls `changed` when someone else (the CLI) rewrites the file; a broken file keeps the pins in memory. */
  watch(changed: () => void): void {
    const dir = dirname(this.file);
    mkdirSync(dir, { recursive: true });
    this.#watcher = watch(dir, { persistent: false }, (_e, f) => {
      if (f !== null && String(f) !== basename(this.file)) return;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.#reload(changed), 50);
      this.#timer.unref();
    });
    this.#watcher.on('error', (e) => this.log.warn({ file: this.file, err: String(e) }, 'tool pin file watcher failed'));
  }

  close(): void {
    this.#watcher?.close();
    if (this.#timer) clearTimeout(this.#timer);
  }

  #reload(changed: () => void): void {
    let text: string;
    try {
      text = existsSync(this.file) ? readFileSync(this.file, 'utf8') : '';
    } catch {
      return;
    }
    if (text === this.#written) return;
    try {
      this.#doc = text === '' ? { version: 1, tools: {} } : parse(text, this.file);
    } catch (e) {
      this.log.error({ file: this.file, err: (e as Error).message }, 'tool pin file is broken: the pins in memory stay in force');
      return;
    }
    this.#written = text;
    this.log.info({ file: this.file }, 'tool pins reloaded');
    changed();
  }

  /** Writes what `check` changed, once (the catalog calls it after each rebuild). */
  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    this.#save();
  }

  #save(): void {
    try {
      writePins(this.file, this.#doc);
      this.#written = readFileSync(this.file, 'utf8');
    } catch (e) {
      // The pins in memory hold either way; a changed definition stays quarantined.
      this.log.error({ file: this.file, err: (e as Error).message }, 'writing the tool pin file failed');
    }
  }
}

/** `micro-mcp tools approve`: the pending definition becomes the pin. Returns what was approved. */
export function approvePin(file: string, name: string, now: () => number = Date.now): Pin {
  const doc = readPins(file);
  const pin = doc.tools[name];
  if (pin === undefined) throw new GatewayError('ERR_TOOL_NOT_FOUND', `${name} has no pin in ${file}`);
  if (pin.pending === undefined) throw new GatewayError('ERR_TOOL_NOT_FOUND', `${name} has no changed definition waiting for approval`);
  const next: Pin = { hash: pin.pending.hash, definition: pin.pending.definition, pinned_at: new Date(now()).toISOString() };
  doc.tools[name] = next;
  writePins(file, doc);
  return next;
}

/** `micro-mcp tools diff`: what changed between the pinned and the pending definition, member by member. */
export function diffPin(file: string, name: string): string[] {
  const pin = readPins(file).tools[name];
  if (pin === undefined) throw new GatewayError('ERR_TOOL_NOT_FOUND', `${name} has no pin in ${file}`);
  if (pin.pending === undefined) return [];
  const a = pin.definition;
  const b = pin.pending.definition;
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const x = canonicalJson(a[k]);
    const y = canonicalJson(b[k]);
    if (x === y) continue;
    if (a[k] !== undefined) out.push(`- ${k}: ${x}`);
    if (b[k] !== undefined) out.push(`+ ${k}: ${y}`);
  }
  return out;
}
