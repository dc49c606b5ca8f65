/**
 * A Glance-shaped image API with no images, under /image: tether boots no images (servers show
 * image ""), but `openstack server list` needs an image service in the catalog that answers
 * version discovery before it looks image names up. Served with tether's identity only (the catalog
 * is what points clients here); it needs a token like the other APIs.
 */
import type { FastifyPluginAsync } from 'fastify';
import { baseUrl } from '../views/links.ts';

export const imageRoutes: FastifyPluginAsync = async (app) => {
  const versions = (base: string) => ({
    versions: [{ id: 'v2.9', status: 'CURRENT', links: [{ rel: 'self', href: `${base}/image/v2/` }] }],
  });
  app.get('/', { schema: { hide: true } }, async (request, reply) => reply.code(300).send(versions(baseUrl(request))));
  app.get('/v2', { schema: { hide: true } }, async (request) => versions(baseUrl(request)));
  app.get('/v2/images', { schema: { hide: true } }, async () => ({ images: [], schema: '/v2/schemas/images', first: '/v2/images' }));
};
