/**
 * TETHER_AUTH=external: tokens issued by an external Keystone, validated with
 * `GET {TETHER_KEYSTONE_URL}/v3/auth/tokens` (X-Subject-Token: the caller's token; X-Auth-Token:
 * tether's own service token, from a password login that is cached and renewed). A valid answer is
 * cached for TETHER_KEYSTONE_CACHE_SECONDS (never past the token's expiry), keyed by the token's
 * SHA-256 so that no token is kept in memory in the clear.
 */
import { createHash } from 'node:crypto';
import { KeystoneSession, identityV3 } from '../blockstorage/cinder/auth.ts';
import type { KeystoneCredentials } from '../blockstorage/cinder/config.ts';
import { TetherError } from '../errors.ts';
import { isRole, type Caller, type Role } from './caller.ts';

export interface ExternalKeystoneOptions {
  /** Keystone's URL, with or without /v3. */
  url: string;
  /** tether's service user (needs Keystone's admin or service role to validate other users' tokens). */
  credentials: KeystoneCredentials;
  cacheSeconds: number;
  timeoutMs: number;
  now?: () => number;
}

/** Keystone role names that mean something to tether (`_member_` is the old name of member). */
function tetherRoles(names: string[]): Role[] {
  return [...new Set(names.map((n) => (n === '_member_' ? 'member' : n.toLowerCase())).filter(isRole))];
}

const MAX_CACHED = 10_000;

export class ExternalKeystone {
  private readonly session: KeystoneSession;
  private readonly cache = new Map<string, { caller: Caller; until: number }>();
  private readonly now: () => number;
  /** Calls made to Keystone's validation endpoint (tests read it). */
  validations = 0;

  constructor(private readonly options: ExternalKeystoneOptions) {
    this.session = new KeystoneSession(options.credentials, { timeoutMs: options.timeoutMs });
    this.now = options.now ?? Date.now;
  }

  /** The caller the token belongs to; null when Keystone does not know it (or it has no project scope). */
  async validate(token: string | undefined): Promise<Caller | null> {
    if (!token || token.length > 8192) return null;
    const key = createHash('sha256').update(token).digest('base64');
    const hit = this.cache.get(key);
    if (hit && hit.until > this.now()) return hit.caller;
    this.cache.delete(key);
    const found = await this.ask(token, true);
    if (found) {
      if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(key, { caller: found.caller, until: Math.min(found.expiresAt, this.now() + this.options.cacheSeconds * 1000) });
    }
    return found?.caller ?? null;
  }

  private async ask(token: string, retry: boolean): Promise<{ caller: Caller; expiresAt: number } | null> {
    let serviceToken: string;
    try {
      serviceToken = (await this.session.token()).token;
    } catch (err) {
      throw new TetherError('HostUnavailable', `The identity service cannot validate tokens: ${(err as Error).message}`);
    }
    let res: Response;
    const url = `${identityV3(this.options.url)}/auth/tokens?nocatalog`;
    try {
      this.validations += 1;
      res = await fetch(url, {
        headers: { 'X-Auth-Token': serviceToken, 'X-Subject-Token': token, Accept: 'application/json' },
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (err) {
      throw new TetherError('HostUnavailable', `The identity service at ${url} could not be reached (${(err as Error).name}).`);
    }
    const text = await res.text().catch(() => '');
    if (res.status === 401 && retry) {
      // tether's own service token expired or was revoked: log in again once
      this.session.invalidate();
      return this.ask(token, false);
    }
    if (res.status === 404 || res.status === 401) return null;
    if (!res.ok) throw new TetherError('HostUnavailable', `The identity service at ${url} answered ${res.status} to a token validation.`);
    let body: { token?: { expires_at?: string; user?: { id?: string; name?: string }; project?: { id?: string; name?: string }; roles?: Array<{ name?: string }> } };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new TetherError('HostUnavailable', `The identity service at ${url} answered a token validation with no JSON.`);
    }
    const t = body.token;
    const expiresAt = Date.parse(t?.expires_at ?? '');
    if (!t?.user?.id || !t.project?.id || !Number.isFinite(expiresAt) || expiresAt <= this.now()) return null;
    return {
      caller: {
        userId: t.user.id,
        userName: t.user.name ?? t.user.id,
        projectId: t.project.id,
        projectName: t.project.name ?? t.project.id,
        roles: tetherRoles((t.roles ?? []).flatMap((r) => (r.name ? [r.name] : []))),
      },
      expiresAt,
    };
  }
}
