/**
 * The Nova-compatible HTTP API: compute under /v2.1 (servers, os-volume_attachments), block storage
 * under /v3 (tether's embedded volume service), each also under /{project_id}; version documents,
 * /healthz and /openapi.json. Every route has a schema; all work goes through the TetherService.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Client } from '@temporalio/client';
import type { TetherConfig } from '../config.ts';
import type { Queryable } from '../db/database.ts';
import type { TetherService } from '../service/tether-service.ts';
import { ApiError, installErrorHandlers } from './errors.ts';
import { COMPUTE_VERSIONS, VOLUME_VERSIONS, useMicroversions } from './microversion.ts';
import { blockStorageRoutes } from './routes/block-storage.ts';
import { blockStorageAttachmentRoutes } from './routes/block-storage-attachments.ts';
import { volumeActionRoutes } from './routes/volume-actions.ts';
import { volumeMetadataRoutes } from './routes/volume-metadata.ts';
import { healthRoutes } from './routes/health.ts';
import { serverRoutes } from './routes/servers.ts';
import { serverActionRoutes } from './routes/server-actions.ts';
import { flavorRoutes } from './routes/flavors.ts';
import { serverCreateRoutes } from './routes/server-create.ts';
import { versionRoutes } from './routes/versions.ts';
import { volumeAttachmentRoutes } from './routes/volume-attachments.ts';
import { computeServiceRoutes } from './routes/compute-services.ts';
import { serverExternalEventRoutes } from './routes/server-external-events.ts';
import { instanceActionRoutes } from './routes/instance-actions.ts';
import { metricsRoutes } from '../metrics/api-plugin.ts';
import rateLimit from '@fastify/rate-limit';
import { createHash } from 'node:crypto';
import { NOAUTH, type Authenticator } from '../auth/authentication.ts';
import { requireCaller } from './authentication.ts';
import type { Caller } from '../auth/caller.ts';
import { identityRoutes } from './routes/identity.ts';
import { imageRoutes } from './routes/images.ts';
import { loadApiLimits, type ApiLimits } from './limits.ts';
import { installHttpTracing } from '../tracing/http-tracing.ts';

export interface ApiDeps {
  service: TetherService;
  /** For /healthz only. */
  db: Queryable;
  client: Client;
  config: Pick<TetherConfig, 'controlTaskQueue' | 'computeHost'> & Partial<Pick<TetherConfig, 'availabilityZone'>>;
  /** Request logs go here; none when absent. */
  logger?: FastifyBaseLogger;
  /**
   * Serve tether's own block-storage API under /v3 (default true). False when the block storage is a
   * real Cinder: clients then talk to Cinder directly (clouds.yaml block_storage_endpoint_override).
   */
  blockStorageApi?: boolean;
  /** Who callers are (src/auth): noauth when absent. keystone also serves the identity API under /identity. */
  auth?: Authenticator;
  /** Body size, timeouts and rate limit; from the environment (src/api/limits.ts) when absent. */
  limits?: ApiLimits;
  /** Cinder's endpoint for the identity catalog, when blockStorageApi is false. */
  cinderEndpoint?: string;
}

/** The rate limit's key: the token's hash when there is one (each token its own budget), else the client's address. */
function rateLimitKey(request: { headers: Record<string, string | string[] | undefined>; ip: string }): string {
  const token = request.headers['x-auth-token'];
  const value = Array.isArray(token) ? token[0] : token;
  return value ? `token:${createHash('sha256').update(value).digest('base64')}` : `ip:${request.ip}`;
}

/** JSON bodies as fastify parses them, except that an empty one (a DELETE sent with a JSON content type) is no body. */
function acceptEmptyJson(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString();
    if (text === '') done(null, undefined);
    else parseJson(request, text, done);
  });
}

/** JSON types of a value, as JSON schema names them. */
function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/**
 * Why a JSON body does not have the types its schema declares (null when it does). fastify's Ajv
 * coerces types everywhere (`true` → 1, `[x]` → x, 12 → "12"), which the query string needs (every
 * value arrives as a string) but a JSON body must not get: Nova and Cinder refuse `"size": true`.
 */
function bodyTypeError(schema: unknown, value: unknown, at: string): string | null {
  if (schema === null || typeof schema !== 'object') return null;
  const s = schema as { type?: string | string[]; properties?: Record<string, unknown>; items?: unknown };
  const actual = jsonType(value);
  if (s.type !== undefined) {
    const allowed = Array.isArray(s.type) ? s.type : [s.type];
    if (!allowed.some((t) => t === actual || (t === 'number' && actual === 'integer'))) {
      return `Invalid input for field/attribute ${at || 'request body'}: must be ${allowed.join(',')}, not ${actual}.`;
    }
  }
  if (actual === 'object' && s.properties) {
    for (const [key, sub] of Object.entries(s.properties)) {
      if (!Object.hasOwn(value as object, key)) continue;
      const why = bodyTypeError(sub, (value as Record<string, unknown>)[key], at ? `${at}.${key}` : key);
      if (why) return why;
    }
  }
  if (actual === 'array' && s.items) {
    for (const [i, item] of (value as unknown[]).entries()) {
      const why = bodyTypeError(s.items, item, `${at}[${i}]`);
      if (why) return why;
    }
  }
  return null;
}

/** PostgreSQL text cannot hold U+0000: a request that carries one is refused before it reaches the database. */
function hasNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  return Object.entries(value).some(([k, v]) => k.includes('\u0000') || hasNul(v, depth + 1));
}

/** An unpaired UTF-16 surrogate (JSON's "\ud800"): no UTF-8 text holds it, PostgreSQL's jsonb refuses it. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function hasLoneSurrogate(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return LONE_SURROGATE.test(value);
  if (value === null || typeof value !== 'object' || depth > 32) return false;
  return Object.entries(value).some(([k, v]) => LONE_SURROGATE.test(k) || hasLoneSurrogate(v, depth + 1));
}

/**
 * Integer query parameters as written: the query string's coercion makes "0x10" 16 and "1e3" 1000
 * (Nova's schemas take decimal digits only).
 */
function badIntegerQuery(request: FastifyRequest): string | null {
  const properties = (request.routeOptions.schema?.querystring as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
  if (!properties) return null;
  const at = request.raw.url?.indexOf('?') ?? -1;
  if (at < 0) return null;
  const raw = new URLSearchParams(request.raw.url!.slice(at + 1));
  for (const [name, property] of Object.entries(properties)) {
    if (property.type !== 'integer') continue;
    for (const v of raw.getAll(name)) if (!/^-?[0-9]+$/.test(v)) return `Invalid input for query parameter ${name}: '${v.slice(0, 40)}' is not an integer.`;
  }
  return null;
}

export async function buildApiServer(deps: ApiDeps) {
  const auth = deps.auth ?? NOAUTH;
  const limits = deps.limits ?? loadApiLimits();
  const app = Fastify({
    // Nova's max_request_body_size; a larger body is a 413 before it is read whole
    bodyLimit: limits.bodyLimit,
    // a connection silent for connectionTimeout is closed; a request (headers included) not received
    // whole within requestTimeout is a 408 (node checks every 30 s, so it may take up to 30 s longer)
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.connectionTimeoutMs,
    http: { requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.requestTimeoutMs },
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    genReqId: () => `req-${randomUUID()}`,
    routerOptions: { ignoreTrailingSlash: true },
    // unknown request fields are refused (as Nova's schemas do), never silently dropped
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // First, so every route's handler runs inside its request's span (a no-op when tracing is off).
  installHttpTracing(app);

  app.decorateRequest('microversion', 0);
  app.decorateRequest('caller', null as unknown as Caller);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-OpenStack-Request-Id', request.id);
    reply.header('X-Compute-Request-Id', request.id);
  });
  installErrorHandlers(app);
  if (limits.rateLimit) {
    await app.register(rateLimit, {
      max: limits.rateLimit.max,
      timeWindow: limits.rateLimit.windowMs,
      keyGenerator: rateLimitKey,
      // liveness probes and metric scrapes are not clients
      allowList: (request) => request.url === '/healthz' || request.url === '/metrics',
      errorResponseBuilder: (_request, context) => new ApiError(429, `Rate limit exceeded: at most ${context.max} requests per ${limits.rateLimit!.windowMs / 1000} s; retry in ${context.after}.`),
    });
  }
  acceptEmptyJson(app);
  app.addHook('preValidation', async (request) => {
    if (hasNul(request.params) || hasNul(request.query) || hasNul(request.body)) {
      throw new ApiError(400, 'Invalid input: the request contains a NUL character (U+0000).');
    }
    if (hasLoneSurrogate(request.params) || hasLoneSurrogate(request.query) || hasLoneSurrogate(request.body)) {
      throw new ApiError(400, 'Invalid input: the request contains an unpaired UTF-16 surrogate (no Unicode character).');
    }
    const badQuery = badIntegerQuery(request);
    if (badQuery) throw new ApiError(400, badQuery);
    const bodySchema = request.routeOptions.schema?.body;
    if (bodySchema !== undefined && request.body !== undefined) {
      const why = bodyTypeError(bodySchema, request.body, '');
      if (why) throw new ApiError(400, why);
    }
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'tether',
        version: '0.1.0',
        description: 'Nova-compatible compute API (v2.1, microversions 2.1-2.104) and Cinder-compatible block storage API (v3, 3.0-3.70).',
      },
      tags: [
        { name: 'versions', description: 'Version discovery' },
        { name: 'compute', description: 'Nova v2.1: servers and volume attachments' },
        { name: 'block-storage', description: "Cinder v3: tether's embedded volume service" },
        { name: 'health', description: 'Liveness of the stack' },
      ],
    },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, { db: deps.db, client: deps.client, controlTaskQueue: deps.config.controlTaskQueue, computeHost: deps.config.computeHost });
  await app.register(metricsRoutes, { client: deps.client, controlTaskQueue: deps.config.controlTaskQueue });
  const blockStorageApi = deps.blockStorageApi ?? true;
  await app.register(versionRoutes, { blockStorage: blockStorageApi });
  if (auth.mode === 'keystone') {
    await app.register(identityRoutes, { prefix: '/identity', identity: auth.identity, blockStorage: blockStorageApi ? true : deps.cinderEndpoint });
    await app.register(
      async (images) => {
        requireCaller(images, auth);
        await images.register(imageRoutes);
      },
      { prefix: '/image' },
    );
  }
  for (const projectScoped of [false, true]) {
    const scope = { service: deps.service, projectScoped };
    await app.register(
      async (compute) => {
        requireCaller(compute, auth);
        useMicroversions(compute, COMPUTE_VERSIONS);
        await compute.register(serverRoutes, scope);
        await compute.register(serverActionRoutes, scope);
        await compute.register(flavorRoutes, scope);
        await compute.register(serverCreateRoutes, scope);
        await compute.register(volumeAttachmentRoutes, scope);
        await compute.register(computeServiceRoutes, { ...scope, availabilityZone: deps.config.availabilityZone ?? 'nova' });
        await compute.register(serverExternalEventRoutes, scope);
        await compute.register(instanceActionRoutes, scope);
      },
      { prefix: projectScoped ? '/v2.1/:project_id' : '/v2.1' },
    );
    if (blockStorageApi) {
      await app.register(
        async (volume) => {
          requireCaller(volume, auth);
          useMicroversions(volume, VOLUME_VERSIONS);
          await volume.register(blockStorageRoutes, scope);
          await volume.register(volumeActionRoutes, scope);
          await volume.register(volumeMetadataRoutes, scope);
          await volume.register(blockStorageAttachmentRoutes, scope);
        },
        { prefix: projectScoped ? '/v3/:project_id' : '/v3' },
      );
    }
  }
  await app.ready();
  return app;
}

export type ApiServer = Awaited<ReturnType<typeof buildApiServer>>;
