/**
 * Tool definitions with plain JSON Schemas, validated by ajv (compiled once at start-up), and their
 * registration on an SDK v2 McpServer. Every call runs: input schema check (by the SDK, through our
 * ajv adapter, before the handler) -> `guardCall` -> handler -> output schema check. Expected
 * refusals are `ToolError`s and become MCP tool errors (`isError: true`) with their message; any
 * other exception becomes a generic tool error so internal detail (paths, stack) never leaks.
 * An error result carries no `structuredContent` (clients validate it against the success-shaped
 * `outputSchema`); its code rides in `_meta` (schemas/contracts/tool-error.ts).
 */
import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { CallToolResult, McpServer, ServerContext, StandardSchemaWithJSON, ToolAnnotations } from '@modelcontextprotocol/server';
import { guardCall, CallRefusedError } from './guard.js';
import type { CallGrant } from './guard.js';
import type { Logger } from './log.js';
import { TOOL_ERROR_META_KEY } from '../../schemas/contracts/tool-error.js';
import type { ToolErrorFacts } from '../../schemas/contracts/tool-error.js';

/** A JSON Schema object (draft-07 subset used by our tools). */
export type JsonSchema = Record<string, unknown>;

/** An expected, user-facing failure of a tool call. The message must not echo arguments or secrets. */
export class ToolError extends Error {
  /** A stable short code (e.g. "symlink", "not_found") for tests and the gateway's audit. */
  readonly code: string;
  /** Machine-readable facts about the failure (e.g. `retry_after_s`), sent beside code and message. */
  readonly details: Readonly<Record<string, string | number | boolean>> | undefined;
  constructor(code: string, message: string, details?: Record<string, string | number | boolean>) {
    super(message);
    this.name = 'ToolError';
    this.code = code;
    this.details = details;
  }
}

/** What a handler returns: the text shown to the model and the structured result. */
export interface ToolOutput {
  text: string;
  structured?: Record<string, unknown>;
}

/** One tool: its definition and its handler. `Args` is the shape its inputSchema guarantees. */
export interface ToolDef<Args = Record<string, unknown>> {
  name: string;
  title: string;
  description: string;
  inputSchema: JsonSchema;
  outputSchema?: JsonSchema;
  annotations: ToolAnnotations;
  /** `grant`: what this call's credential allows (its reach), checked by the guard before the handler runs. */
  handler: (args: Args, ctx: ServerContext, grant: CallGrant) => Promise<ToolOutput>;
}

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  if (!errors || errors.length === 0) return 'invalid';
  // instancePath and the ajv message name the offending field without echoing its value.
  return errors
    .slice(0, 3)
    .map((e) => {
      const where = e.instancePath === '' ? 'arguments' : e.instancePath.slice(1).replace(/\//g, '.');
      const extra =
        e.keyword === 'additionalProperties'
          ? ` (unexpected property "${String((e.params as { additionalProperty?: string }).additionalProperty).slice(0, 64)}")`
          : '';
      return `${where} ${e.message ?? 'is invalid'}${extra}`;
    })
    .join('; ');
}

/** Wraps a JSON Schema as a Standard Schema validated by our ajv instance (compiled once, here). */
export function ajvSchema(schema: JsonSchema): StandardSchemaWithJSON<Record<string, unknown>> {
  const check: ValidateFunction = ajv.compile(schema);
  return {
    '~standard': {
      version: 1,
      vendor: 'micro-mcp-ajv',
      jsonSchema: { input: () => schema, output: () => schema },
      validate: (value: unknown) => (check(value) ? { value: value as Record<string, unknown> } : { issues: [{ message: describeErrors(check.errors) }] }),
    },
  };
}

/**
 * A tool error result with a clear message. No `structuredContent`: it would have to match the tool's
 * success-shaped outputSchema, and SDK clients that validate it would replace the message with a
 * schema complaint. The stable code (and details such as `retry_after_s`) rides in `_meta`.
 */
export function toolErrorResult(message: string, code = 'error', details: Readonly<Record<string, string | number | boolean>> = {}): CallToolResult {
  const facts: ToolErrorFacts = { ...details, code, message };
  return { content: [{ type: 'text', text: message }], isError: true, _meta: { [TOOL_ERROR_META_KEY]: facts } };
}

/** Registers the tools on `server`, routing every call through `guardCall` and logging outcomes only. */
export function registerTools(server: McpServer, tools: readonly ToolDef<never>[], logger: Logger): void {
  for (const tool of tools) {
    const handler = tool.handler as (args: Record<string, unknown>, ctx: ServerContext, grant: CallGrant) => Promise<ToolOutput>;
    const inputSchema = ajvSchema(tool.inputSchema);
    const config = {
      title: tool.title,
      description: tool.description,
      inputSchema,
      annotations: tool.annotations,
      ...(tool.outputSchema ? { outputSchema: ajvSchema(tool.outputSchema) } : {}),
    };
    server.registerTool(tool.name, config, async (args: Record<string, unknown>, ctx: ServerContext): Promise<CallToolResult> => {
      const started = performance.now();
      try {
        const grant = await guardCall(ctx, tool.name);
        const out = await handler(args, ctx, grant);
        logger.log('info', 'tool call', { tool: tool.name, outcome: 'ok', ms: Math.round(performance.now() - started) });
        const result: CallToolResult = { content: [{ type: 'text', text: out.text }] };
        if (out.structured !== undefined) result.structuredContent = out.structured;
        return result;
      } catch (e) {
        const code = e instanceof ToolError ? e.code : e instanceof CallRefusedError ? 'refused_credential' : 'internal';
        logger.log(code === 'internal' ? 'error' : 'info', 'tool call', {
          tool: tool.name,
          outcome: 'error',
          code,
          ms: Math.round(performance.now() - started),
        });
        if (e instanceof ToolError) return toolErrorResult(e.message, code, e.details);
        if (e instanceof CallRefusedError) return toolErrorResult(e.message, code);
        return toolErrorResult(`${tool.name}: internal error`, code);
      }
    });
  }
}
