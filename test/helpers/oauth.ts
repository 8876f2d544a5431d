/**
 * An OAuthClientProvider as a native MCP client writes one (both SDK generations share the shape):
 * it keeps client information, tokens and the PKCE verifier in memory, and "opens the browser" by
 * following the authorization URL itself, without following the redirect back, which it records
 * as the callback a loopback listener would have received.
 */
import type { StoredOAuthClientInformation, StoredOAuthTokens } from '@modelcontextprotocol/client';

export class LoopbackOAuthProvider {
  private info: StoredOAuthClientInformation | undefined;
  private stored: StoredOAuthTokens | undefined;
  private verifier = '';
  /** The authorization response (the redirect's Location), once the authorize step ran. */
  callback: URL | undefined;
  /** The authorization URL the SDK built (to check PKCE and resource parameters). */
  authorizationUrl: URL | undefined;

  constructor(
    readonly redirectUrl: string,
    private readonly scope?: string,
  ) {}

  get clientMetadata() {
    return {
      client_name: 'e2e oauth client',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(this.scope !== undefined ? { scope: this.scope } : {}),
    };
  }

  state(): string {
    return 'e2e-state';
  }

  clientInformation(): StoredOAuthClientInformation | undefined {
    return this.info;
  }

  saveClientInformation(info: StoredOAuthClientInformation): void {
    this.info = info;
  }

  tokens(): StoredOAuthTokens | undefined {
    return this.stored;
  }

  saveTokens(tokens: StoredOAuthTokens): void {
    this.stored = tokens;
  }

  /** The access token the flow obtained (for the tests' own checks). */
  get accessToken(): string | undefined {
    return this.stored?.access_token;
  }

  async redirectToAuthorization(url: URL): Promise<void> {
    this.authorizationUrl = url;
    const r = await fetch(url, { redirect: 'manual' });
    const location = r.headers.get('location');
    if (r.status !== 302 || location === null) throw new Error(`authorize answered ${r.status}: ${await r.text()}`);
    this.callback = new URL(location);
  }

  saveCodeVerifier(v: string): void {
    this.verifier = v;
  }

  codeVerifier(): string {
    return this.verifier;
  }
}
