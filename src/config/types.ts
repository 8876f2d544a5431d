/** The validated, frozen gateway configuration. Section schemas live in schemas/config*.schema.json. */

export type Era = 'auto' | 'legacy' | 'modern';

interface ServiceCommon {
  description?: string;
  era: Era;
  call_timeout_ms: number;
  connect_timeout_ms: number;
  restart?: { initial_delay_ms: number; max_delay_ms: number };
}

export interface StdioServiceConfig extends ServiceCommon {
  transport: 'stdio';
  command: string;
  args?: string[];
  cwd?: string;
  env?: Record<string, string>;
  inherit_env?: string[];
}

export interface HttpServiceConfig extends ServiceCommon {
  transport: 'http';
  url: string;
  headers?: Record<string, string>;
  tls?: { ca_file?: string; cert_file?: string; key_file?: string };
}

export type ServiceConfig = StdioServiceConfig | HttpServiceConfig;

export interface ServerConfig {
  host: string;
  port: number;
  public_url?: string;
  allowed_hosts?: string[];
  allowed_origins?: string[];
  max_body_bytes: number;
  session_idle_timeout_s: number;
  max_sessions: number;
  page_size: number;
  shutdown_grace_ms: number;
}

export interface Config {
  server: ServerConfig;
  services: Record<string, ServiceConfig>;
  logging?: { level: string };
  limits: { calls_per_minute: number; burst: number; concurrent_per_principal: number };
  /** Sections owned by their modules, which type and check them further (auth/, policy/, audit/). */
  auth?: Record<string, unknown>;
  policy?: Record<string, unknown>;
  audit?: Record<string, unknown>;
  /** Absolute path of the file this came from. */
  source: string;
}
