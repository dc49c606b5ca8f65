/**
 * Keystone's Identity v3 token API (registered with the prefix /identity), enough for the `openstack` and `nova` CLIs
 * (and keystoneauth) with password auth: version documents, POST /v3/auth/tokens (201 with
 * X-Subject-Token and the token with its service catalog), GET/HEAD (validate) and DELETE
 * (revoke). Errors have Keystone's body `{"error": {"code", "title", "message"}}`.
 */
import { createHash } from 'node:crypto';
import type { FastifyError, FastifyPluginAsync, FastifyRequest } from 'fastify';
import { TetherError } from '../../errors.ts';
import { ApiError } from '../errors.ts';
import { baseUrl } from '../views/links.ts';
import { hasRole } from '../../auth/policy.ts';
import { KeystoneError, callerOf, unauthorized, type KeystoneIdentity, type TokenInfo } from '../../auth/keystone-identity.ts';

export interface IdentityRoutesOptions {
  identity: KeystoneIdentity;
  /** Block storage in the catalog: tether's own /v3 (true), or Cinder's endpoint (a URL), or none. */
  blockStorage: true | string | undefined;
}

const TITLES: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests' };

function keystoneBody(code: number, message: string) {
  return { error: { code, title: TITLES[code] ?? 'Internal Server Error', message } };
}

/** Keystone's timestamps: microseconds and Z. */
function keystoneTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function stableId(kind: string, name: string): string {
  return createHash('sha256').update(`${kind}\u0000${name}`).digest('hex').slice(0, 32);
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function versionDocument(base: string) {
  return {
    id: 'v3.14',
    status: 'stable',
    updated: '2020-04-07T00:00:00Z',
    links: [{ rel: 'self', href: `${base}/identity/v3/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
  };
}

function endpoints(service: string, url: string) {
  return ['public', 'internal', 'admin'].map((iface) => ({ id: stableId('endpoint', `${service}/${iface}`), interface: iface, region: 'RegionOne', region_id: 'RegionOne', url }));
}

export const identityRoutes: FastifyPluginAsync<IdentityRoutesOptions> = async (app, { identity, blockStorage }) => {
  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    let code = 500;
    let message = 'An unexpected error prevented the server from fulfilling your request.';
    if (err instanceof KeystoneError) [code, message] = [err.statusCode, err.message];
    else if (err instanceof ApiError) [code, message] = [err.statusCode, err.message];
    else if (err instanceof TetherError && err.status < 500) [code, message] = [err.status, err.message];
    else if ((err as FastifyError).statusCode !== undefined && (err as FastifyError).statusCode! < 500) [code, message] = [(err as FastifyError).statusCode!, err.message];
    else request.log.error({ err }, 'identity request failed');
    return reply.code(code).send(keystoneBody(code, message));
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(keystoneBody(404, 'The resource could not be found.')));

  const tokenBody = (request: FastifyRequest, info: TokenInfo, withCatalog: boolean) => {
    const base = baseUrl(request);
    const catalog = [
      { type: 'compute', name: 'nova', id: stableId('service', 'compute'), endpoints: endpoints('compute', `${base}/v2.1`) },
      ...(blockStorage === undefined
        ? []
        : ['volumev3', 'block-storage'].map((type) => ({
            type,
            name: type === 'volumev3' ? 'cinderv3' : 'block-storage',
            id: stableId('service', type),
            endpoints: endpoints(type, blockStorage === true ? `${base}/v3` : blockStorage),
          }))),
      { type: 'identity', name: 'keystone', id: stableId('service', 'identity'), endpoints: endpoints('identity', `${base}/identity/v3`) },
      // tether has no image service; `openstack server list` insists on an image endpoint before it looks
      // image names up (a failed lookup is ignored, and servers show no image)
      { type: 'image', name: 'glance', id: stableId('service', 'image'), endpoints: endpoints('image', `${base}/image`) },
    ];
    return {
      token: {
        methods: info.methods,
        user: { domain: info.user.domain, id: info.user.id, name: info.user.name, password_expires_at: null },
        audit_ids: [info.auditId],
        expires_at: keystoneTime(info.expiresAt),
        issued_at: keystoneTime(info.issuedAt),
        project: { domain: info.project.domain, id: info.project.id, name: info.project.name },
        is_domain: false,
        roles: info.roles.map((name) => ({ id: stableId('role', name), name })),
        ...(withCatalog ? { catalog } : {}),
      },
    };
  };

  app.get('/', { schema: { hide: true } }, async (request, reply) => reply.code(300).send({ versions: { values: [versionDocument(baseUrl(request))] } }));
  app.get('/v3', { schema: { hide: true } }, async (request) => ({ version: versionDocument(baseUrl(request)) }));

  app.post('/v3/auth/tokens', { schema: { hide: true } }, async (request, reply) => {
    const { token, info } = await identity.authenticate(request.body);
    const withCatalog = !Object.hasOwn(request.query as object, 'nocatalog');
    return reply.code(201).header('X-Subject-Token', token).send(tokenBody(request, info, withCatalog));
  });

  /** The caller's token must be valid; it may look at its own user's tokens, admins and services at any. */
  const subjectFor = async (request: FastifyRequest): Promise<{ subject: string; info: TokenInfo | null }> => {
    const caller = await identity.validate(header(request, 'x-auth-token'));
    if (!caller) throw unauthorized();
    const subject = header(request, 'x-subject-token');
    if (!subject) throw new KeystoneError(400, 'Bad Request', 'Expecting to find X-Subject-Token in the request headers.');
    const info = subject === header(request, 'x-auth-token') ? caller : await identity.validate(subject);
    const c = callerOf(caller);
    if (info && info.user.id !== caller.user.id && !hasRole(c, 'admin') && !c.roles.includes('service')) {
      throw new KeystoneError(403, 'Forbidden', 'You are not authorized to perform the requested action: identity:validate_token.');
    }
    return { subject, info };
  };
  const notFound = () => new KeystoneError(404, 'Not Found', 'Could not find token.');

  app.get('/v3/auth/tokens', { schema: { hide: true } }, async (request, reply) => {
    const { subject, info } = await subjectFor(request);
    if (!info) throw notFound();
    return reply.header('X-Subject-Token', subject).send(tokenBody(request, info, !Object.hasOwn(request.query as object, 'nocatalog')));
  });

  app.delete('/v3/auth/tokens', { schema: { hide: true } }, async (request, reply) => {
    const { subject, info } = await subjectFor(request);
    if (!info || !(await identity.revoke(subject))) throw notFound();
    return reply.code(204).send();
  });
};
