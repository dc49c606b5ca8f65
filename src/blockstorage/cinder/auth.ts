/**
 * How tether authenticates to Cinder: noauth (tests, `X-Auth-Token: <user>:<project_id>`) or a
 * Keystone v3 password session whose token is cached, shared by concurrent callers and renewed
 * before it expires. The service role Cinder wants for deleting an attachment that is still
 * attached (CVE-2023-2088) travels as `X-Service-Roles` in noauth and as `X-Service-Token` with Keystone.
 * Passwords and tokens are never logged and never put in error messages.
 */
import type { CinderAuthConfig, KeystoneCredentials } from './config.ts';
import { CinderAuthError, CinderUnavailableError, describeFetchFailure } from './errors.ts';

export type Headers = Record<string, string>;

export interface CinderAuth {
  readonly kind: 'noauth' | 'keystone';
  /** Headers every request carries (X-Auth-Token). */
  headers(): Promise<Headers>;
  /** Extra headers for the calls that need Cinder's service role. */
  serviceHeaders(): Promise<Headers>;
  /** The project the URLs are scoped to. */
  projectId(): Promise<string>;
  /** The block-storage endpoint from the Keystone catalog (undefined in noauth). */
  catalogEndpoint(): Promise<string | undefined>;
  /** After a 401: forget cached tokens. True when asking again may help. */
  invalidate(): boolean;
}

export class NoAuth implements CinderAuth {
  readonly kind = 'noauth';
  constructor(private readonly config: Extract<CinderAuthConfig, { kind: 'noauth' }>) {}
  async headers(): Promise<Headers> {
    return { 'X-Auth-Token': `${this.config.user}:${this.config.projectId}` };
  }
  async serviceHeaders(): Promise<Headers> {
    return { 'X-Service-Roles': this.config.serviceRoles };
  }
  async projectId(): Promise<string> {
    return this.config.projectId;
  }
  async catalogEndpoint(): Promise<string | undefined> {
    return undefined;
  }
  invalidate(): boolean {
    return false;
  }
}

interface CatalogEntry {
  type?: string;
  endpoints?: Array<{ interface?: string; region?: string; region_id?: string; url?: string }>;
}

export interface KeystoneToken {
  token: string;
  issuedAt: number;
  expiresAt: number;
  projectId: string;
  catalog: CatalogEntry[];
}

export interface KeystoneSessionOptions {
  timeoutMs: number;
  now?: () => number;
  fetch?: typeof fetch;
}

/** The Identity v3 base of OS_AUTH_URL, which may be given with or without /v3. */
export function identityV3(authUrl: string): string {
  const base = authUrl.replace(/\/+$/, '');
  return /\/v3$/.test(base) ? base : `${base}/v3`;
}

/** One Keystone user's token: issued on first use, renewed ahead of expiry, one request in flight at a time. */
export class KeystoneSession {
  private current: KeystoneToken | undefined;
  private pending: Promise<KeystoneToken> | undefined;
  private readonly now: () => number;
  private readonly fetch: typeof fetch;
  /** Tokens issued so far (tests read it). */
  issued = 0;

  constructor(
    private readonly credentials: KeystoneCredentials,
    private readonly options: KeystoneSessionOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** Renew when less than 5 minutes (or half the lifetime, for short-lived tokens) remain. */
  private renewAt(t: KeystoneToken): number {
    return t.expiresAt - Math.min(5 * 60_000, (t.expiresAt - t.issuedAt) / 2);
  }

  async token(): Promise<KeystoneToken> {
    const current = this.current;
    const now = this.now();
    if (current && now < this.renewAt(current)) return current;
    this.pending ??= this.issue().finally(() => {
      this.pending = undefined;
    });
    try {
      return await this.pending;
    } catch (err) {
      // Renewal ahead of expiry failed: the old token still works for a while.
      if (current && now < current.expiresAt - 10_000) return current;
      throw err;
    }
  }

  invalidate(): void {
    this.current = undefined;
  }

  private async issue(): Promise<KeystoneToken> {
    const c = this.credentials;
    const url = `${identityV3(c.authUrl)}/auth/tokens`;
    const project = c.projectId ? { id: c.projectId } : { name: c.projectName, domain: { name: c.projectDomainName } };
    const body = {
      auth: {
        identity: { methods: ['password'], password: { user: { name: c.username, password: c.password, domain: { name: c.userDomainName } } } },
        scope: { project },
      },
    };
    let res: Response;
    try {
      res = await this.fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (err) {
      throw new CinderUnavailableError(`Keystone at ${url} could not be reached: ${describeFetchFailure(err, this.options.timeoutMs)}`);
    }
    const text = await res.text().catch(() => '');
    const who = `user ${c.username} (domain ${c.userDomainName}), project ${c.projectId ?? `${c.projectName} (domain ${c.projectDomainName})`}`;
    if (res.status === 401) throw new CinderAuthError(`Keystone at ${url} refused the credentials of ${who} (401)`);
    if (!res.ok) throw new CinderUnavailableError(`Keystone at ${url} answered ${res.status} when issuing a token for ${who}`);
    const token = res.headers.get('x-subject-token');
    let parsed: { token?: { expires_at?: string; issued_at?: string; project?: { id?: string }; catalog?: CatalogEntry[] } } = {};
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      // handled below
    }
    const expiresAt = Date.parse(parsed.token?.expires_at ?? '');
    const projectId = parsed.token?.project?.id;
    if (!token || !Number.isFinite(expiresAt) || !projectId) {
      throw new CinderUnavailableError(`Keystone at ${url} answered ${res.status} without a project-scoped token for ${who}`);
    }
    const issuedAt = Date.parse(parsed.token?.issued_at ?? '');
    this.issued += 1;
    this.current = {
      token,
      issuedAt: Number.isFinite(issuedAt) ? Math.min(issuedAt, this.now()) : this.now(),
      expiresAt,
      projectId,
      catalog: parsed.token?.catalog ?? [],
    };
    return this.current;
  }
}

export class KeystoneAuth implements CinderAuth {
  readonly kind = 'keystone';
  readonly user: KeystoneSession;
  readonly service: KeystoneSession | undefined;

  constructor(
    private readonly config: Extract<CinderAuthConfig, { kind: 'keystone' }>,
    options: KeystoneSessionOptions,
  ) {
    this.user = new KeystoneSession(config.credentials, options);
    this.service = config.serviceCredentials ? new KeystoneSession(config.serviceCredentials, options) : undefined;
  }

  async headers(): Promise<Headers> {
    return { 'X-Auth-Token': (await this.user.token()).token };
  }

  async serviceHeaders(): Promise<Headers> {
    return { 'X-Service-Token': (await (this.service ?? this.user).token()).token };
  }

  async projectId(): Promise<string> {
    return (await this.user.token()).projectId;
  }

  async catalogEndpoint(): Promise<string | undefined> {
    const { catalog } = await this.user.token();
    for (const type of ['block-storage', 'volumev3']) {
      for (const entry of catalog.filter((e) => e.type === type)) {
        const ep = (entry.endpoints ?? []).find(
          (e) => e.interface === this.config.interface && (!this.config.region || e.region_id === this.config.region || e.region === this.config.region),
        );
        if (ep?.url) return ep.url;
      }
    }
    return undefined;
  }

  invalidate(): boolean {
    this.user.invalidate();
    this.service?.invalidate();
    return true;
  }
}

export function createAuth(config: CinderAuthConfig, options: KeystoneSessionOptions): CinderAuth {
  return config.kind === 'noauth' ? new NoAuth(config) : new KeystoneAuth(config, options);
}
