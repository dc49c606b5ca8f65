/**
 * Who a request comes from. noauth: the admin of the default project, always. keystone: the
 * X-Auth-Token must be a live token of tether's identity; external: one that the external Keystone
 * validates. No valid token: 401 before any work. `request.caller` is set for the compute and
 * block-storage routes, and `tetherFor(request)` gives them the service as that caller sees it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Database } from '../db/database.ts';
import type { TetherService } from '../service/tether-service.ts';
import type { AuthConfig } from './auth-config.ts';
import { NOAUTH_CALLER, type Caller } from './caller.ts';
import { ExternalKeystone } from './external-keystone.ts';
import { loadIdentityFile } from './identity-file.ts';
import { KeystoneIdentity, callerOf } from './keystone-identity.ts';
import { ScopedTetherService } from './scoped-service.ts';
import { TokenStore } from './token-store.ts';
import { ApiError } from '../api/errors.ts';

export type Authenticator =
  | { mode: 'noauth' }
  | { mode: 'keystone'; identity: KeystoneIdentity }
  | { mode: 'external'; keystone: ExternalKeystone };

export const NOAUTH: Authenticator = { mode: 'noauth' };

/** Reads the identity file (keystone) or prepares the external validator; fails at start-up on a bad configuration. */
export async function createAuthenticator(config: AuthConfig, db: Database): Promise<Authenticator> {
  switch (config.mode) {
    case 'noauth':
      return NOAUTH;
    case 'keystone':
      return { mode: 'keystone', identity: new KeystoneIdentity(await loadIdentityFile(config.identityFile), new TokenStore(db), { tokenTtlSeconds: config.tokenTtlSeconds }) };
    case 'external':
      return { mode: 'external', keystone: new ExternalKeystone(config) };
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller (compute and block-storage routes). */
    caller: Caller;
  }
}

function tokenOf(request: FastifyRequest): string | undefined {
  const v = request.headers['x-auth-token'];
  return Array.isArray(v) ? v[0] : v;
}

export async function callerOfRequest(auth: Authenticator, request: FastifyRequest): Promise<Caller | null> {
  switch (auth.mode) {
    case 'noauth':
      return NOAUTH_CALLER;
    case 'keystone': {
      const info = await auth.identity.validate(tokenOf(request));
      return info ? callerOf(info) : null;
    }
    case 'external':
      return auth.keystone.validate(tokenOf(request));
  }
}

/**
 * Authenticates every request of this (encapsulated) scope (the root decorates `request.caller`). With a token, a `project_id` in the
 * URL must be the token's project (Nova answers 400 to a mismatch; admins included).
 */
export function requireCaller(app: FastifyInstance, auth: Authenticator): void {
  app.addHook('onRequest', async (request, reply) => {
    const caller = await callerOfRequest(auth, request);
    if (!caller) {
      if (auth.mode === 'keystone') reply.header('WWW-Authenticate', `Keystone uri="${request.protocol}://${request.host}/identity/v3"`);
      throw new ApiError(401, 'The request you have made requires authentication.');
    }
    request.caller = caller;
    const urlProject = (request.params as { project_id?: string } | undefined)?.project_id;
    if (auth.mode !== 'noauth' && urlProject !== undefined && urlProject !== caller.projectId) {
      throw new ApiError(400, `Malformed request URL: URL's project_id '${urlProject}' doesn't match Context's project_id '${caller.projectId}'`);
    }
  });
}

/** The service as the request's caller sees it (the policy applied). */
export function tetherFor(service: TetherService, request: FastifyRequest): ScopedTetherService {
  return new ScopedTetherService(service, request.caller);
}

const TRUE = new Set(['', '1', 't', 'true', 'on', 'y', 'yes']);
const FALSE = new Set(['0', 'f', 'false', 'off', 'n', 'no']);

/**
 * A list's `all_tenants` query value: true/false as Nova parses it (an empty value is true; anything
 * else is a 400). Absent: false with a token (an admin's lists show its own project, as in Nova),
 * undefined in noauth (every project, as before auth existed).
 */
export function allTenantsOf(request: FastifyRequest, raw: string | undefined): boolean | undefined {
  if (raw === undefined) return request.caller === NOAUTH_CALLER ? undefined : false;
  const v = raw.trim().toLowerCase();
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  throw new ApiError(400, `Invalid input for field/attribute all_tenants. Value: ${raw.slice(0, 40)}. Unrecognized value '${raw.slice(0, 40)}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'`);
}
