/**
 * The validated, frozen gateway configuration. The types are generated from schemas/config*.schema.json
 * (`make schemas`, schemas/generated/config.ts): the schemas are their one source. Keys with a schema
 * default are always present, since ajv fills them in at load.
 */
import type { GatewayConfig, ServiceConfig } from '../../schemas/generated/config.js';

export type { ServiceConfig };

/** Which MCP protocol era the gateway speaks to a service. */
export type Era = ServiceConfig['era'];

export interface Config extends GatewayConfig {
  /** Absolute path of the file this came from. */
  source: string;
  /** The serving process's private runtime folder (LoadOptions.runDir); null when only checked. */
  runDir: string | null;
}
