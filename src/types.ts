/**
 * Plain types shared by the domain folders (auth, policy, audit, front, catalog). They are the
 * contract in docs/ARCHITECTURE.md ("The policy contract"); change names only with a README
 * migration note.
 */

/** Who is calling, as established by authentication. Never carries the raw token. */
export interface Principal {
  id: string;
  type: 'user' | 'agent' | 'service';
  issuer: string;
  groups: string[];
  attributes: Record<string, unknown>;
  /** Scopes granted by the token (`scope` / `scp`). */
  scopes: string[];
  /** The OAuth client / agent software acting for the principal (`azp` / `client_id`). */
  client: { id: string | null };
  /** A purpose bound into the token (`purpose` claim), if any. */
  purpose: string | null;
  /**
   * The purposes the principal may act under, granted by its token (the `purposes` claim, and the
   * bound `purpose`). Policies may grant more by group; any other declared purpose is denied.
   */
  purposes?: readonly string[];
  /** Token id (`jti`) when present, for audit correlation; never the token. */
  token_id?: string;
  /** Seconds since epoch when the credential expires. */
  expires_at?: number;
}

export type PolicyPhase = 'list' | 'call';

export interface ToolFacts {
  name: string; // "fs.read"
  namespace: string; // "fs"
  local_name: string; // "read"
  annotations: Record<string, unknown>;
  definition_hash: string; // "sha256:..."
}

/** The one document both engines see, built once per decision. */
export interface PolicyInput {
  phase: PolicyPhase;
  /** The MCP method; only those of the method table (src/policy/methods.ts) are decided. */
  method: string;
  /** The policy action of the method, from the same table ("call_tool", "list_tools", ...). */
  action: string;
  principal: {
    id: string;
    type: Principal['type'];
    issuer: string;
    groups: string[];
    /** Purposes granted by the token (sorted, unique; the bound purpose included). */
    purposes: string[];
    attributes: Record<string, unknown>;
  };
  client: { id: string | null };
  scopes: string[];
  purpose: string | null;
  tool: ToolFacts;
  arguments?: Record<string, unknown>;
  /** Service-specific attributes extracted from arguments: fs {path}, http {url, scheme, host, port, method}. */
  resource: Record<string, unknown>;
  context: {
    time: string;
    request_id: string;
    session_id: string | null;
    client_ip: string | null;
    /** Data categories of the results this session received so far; absent until there is one. */
    data_labels?: string[];
  };
}

export interface DecisionReason {
  engine: 'rego' | 'cedar' | 'gateway';
  /** Policy / rule id, e.g. "fs_read_requires_scope". */
  id: string;
  message: string;
}

/** One engine's own answer within a decision: both engines are on the record, allow and deny. */
export interface EngineVerdict {
  engine: DecisionReason['engine'];
  allow: boolean;
  /** This engine's grants when it allowed, its denials when it denied. */
  reasons: DecisionReason[];
  /** Why the engine could not answer (a stable code, e.g. ERR_ENGINE_TIMEOUT); absent when it answered. */
  error?: string;
}

/** A redaction category an obligation may name (src/policy/obligations.ts). */
export type RedactCategory = 'email' | 'phone' | 'card' | 'secrets';

/**
 * The obligations of a decision, checked and merged (src/policy/obligations.ts; the strictest wins).
 * When allowed: reach, consent, redact, max_bytes, labels. When denied: only step_up_scopes.
 */
export type Obligations = {
  /** Denied only: the scopes that would lift a scope denial (HTTP 403 step-up). */
  step_up_scopes?: string[];
  /** Rego only: what the service credential's reach is narrowed to ({hosts, ports, roots}). */
  reach?: Record<string, unknown>;
  /** The agent's user must approve this exact call (tool, arguments) before it is forwarded. */
  consent?: true;
  /** Categories removed from the result before the agent sees it. */
  redact?: RedactCategory[];
  /** The largest result (serialised JSON bytes) the agent may receive; a larger one is refused. */
  max_bytes?: number;
  /** Data categories of the result (pii, secret, internal, ...): audited, and facts of later calls in the session. */
  labels?: string[];
};

export interface Decision {
  allow: boolean;
  reasons: DecisionReason[];
  /** Each engine's verdict, in the order they decided (absent only where no engine was asked). */
  engines?: EngineVerdict[];
  obligations: Obligations;
  /** Hash of the policy bundle(s) that decided. */
  policy_revision: string;
  /** Evaluation time in microseconds. */
  eval_us: number;
}

/** The operational logger every module receives (pino-compatible subset; pino is created in one place). */
export interface Logger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}
