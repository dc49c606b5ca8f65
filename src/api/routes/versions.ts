/** Version discovery: `/` and `/v2.1` (compute), `/v3` (block storage); trailing slashes are ignored. */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { VersionDocument } from '../schemas/common.ts';
import { baseUrl } from '../views/links.ts';
import { computeVersion, volumeVersion } from '../views/versions.ts';

export const versionRoutes: FastifyPluginAsyncTypebox<{ blockStorage?: boolean }> = async (app, { blockStorage = true }) => {
  const versions = Type.Object({ versions: Type.Array(VersionDocument) });

  app.get('/', { schema: { summary: 'Compute API versions', tags: ['versions'], response: { 200: versions } } }, async (request) => ({
    versions: [computeVersion(baseUrl(request))],
  }));

  app.get(
    '/v2.1',
    { schema: { summary: 'Compute API v2.1 (microversions 2.1 to 2.104)', tags: ['versions'], response: { 200: Type.Object({ version: VersionDocument }) } } },
    async (request) => ({ version: computeVersion(baseUrl(request)) }),
  );

  if (blockStorage) app.get(
    '/v3',
    { schema: { summary: 'Block storage API v3 (microversions 3.0 to 3.70)', tags: ['versions'], response: { 200: versions } } },
    async (request) => ({ versions: [volumeVersion(baseUrl(request))] }),
  );
};
