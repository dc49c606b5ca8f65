/**
 * Authentication as HTTP glue: an `onRequest` hook per scope (compute, block storage, images) that
 * turns X-Auth-Token into `request.caller` (src/auth decides who that is) or answers 401 before any
 * work; the `all_tenants` query value as Nova parses it. The policy itself is src/auth/policy.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { callerOfToken, type Authenticator } from '../auth/authentication.ts';
import { NOAUTH_CALLER, type Caller } from '../auth/caller.ts';
import type { TetherService } from '../service/tether-service.ts';
import { ApiError } from './errors.ts';

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

/**
 * Authenticates every request of this (encapsulated) scope (the root decorates `request.caller`). With a token, a `project_id` in the
 * URL must be the token's project (Nova answers 400 to a mismatch; admins included).
 */
export function requireCaller(app: FastifyInstance, auth: Authenticator): void {
  app.addHook('onRequest', async (request, reply) => {
    const caller = await callerOfToken(auth, tokenOf(request));
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

/** The service acting for the request's caller (it resolves and authorizes within what that caller may see). */
export function tetherFor(service: TetherService, request: FastifyRequest): TetherService {
  return service.as(request.caller, request.id);
}
