/**
 * The Nova-compatible HTTP API: compute under /v2.1 (servers, os-volume_attachments), block storage
 * under /v3 (tether's embedded volume service), each also under /{project_id}; version documents,
 * /healthz and /openapi.json. Every route has a schema; all work goes through the TetherService.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Client } from '@temporalio/client';
import type { TetherConfig } from '../config.ts';
import type { Queryable } from '../db/database.ts';
import type { TetherService } from '../service/tether-service.ts';
import { installErrorHandlers } from './errors.ts';
import { COMPUTE_VERSIONS, VOLUME_VERSIONS, useMicroversions } from './microversion.ts';
import { blockStorageRoutes } from './routes/block-storage.ts';
import { healthRoutes } from './routes/health.ts';
import { serverRoutes } from './routes/servers.ts';
import { versionRoutes } from './routes/versions.ts';
import { volumeAttachmentRoutes } from './routes/volume-attachments.ts';
import { metricsRoutes } from '../metrics/api-plugin.ts';

export interface ApiDeps {
  service: TetherService;
  /** For /healthz only. */
  db: Queryable;
  client: Client;
  config: Pick<TetherConfig, 'controlTaskQueue' | 'computeHost'>;
  /** Request logs go here; none when absent. */
  logger?: FastifyBaseLogger;
  /**
   * Serve tether's own block-storage API under /v3 (default true). False when the block storage is a
   * real Cinder: clients then talk to Cinder directly (clouds.yaml block_storage_endpoint_override).
   */
  blockStorageApi?: boolean;
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

export async function buildApiServer(deps: ApiDeps) {
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    genReqId: () => `req-${randomUUID()}`,
    routerOptions: { ignoreTrailingSlash: true },
    // unknown request fields are refused (as Nova's schemas do), never silently dropped
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorateRequest('microversion', 0);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-OpenStack-Request-Id', request.id);
    reply.header('X-Compute-Request-Id', request.id);
  });
  installErrorHandlers(app);
  acceptEmptyJson(app);

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'tether',
        version: '0.1.0',
        description: 'Nova-compatible compute API (v2.1, microversions 2.1-2.89) and Cinder-compatible block storage API (v3, 3.0-3.70).',
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
  for (const projectScoped of [false, true]) {
    const scope = { service: deps.service, projectScoped };
    await app.register(
      async (compute) => {
        useMicroversions(compute, COMPUTE_VERSIONS);
        await compute.register(serverRoutes, scope);
        await compute.register(volumeAttachmentRoutes, scope);
      },
      { prefix: projectScoped ? '/v2.1/:project_id' : '/v2.1' },
    );
    if (blockStorageApi) {
      await app.register(
        async (volume) => {
          useMicroversions(volume, VOLUME_VERSIONS);
          await volume.register(blockStorageRoutes, scope);
        },
        { prefix: projectScoped ? '/v3/:project_id' : '/v3' },
      );
    }
  }
  await app.ready();
  return app;
}

export type ApiServer = Awaited<ReturnType<typeof buildApiServer>>;
