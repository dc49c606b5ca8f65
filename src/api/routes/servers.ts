/** GET /servers, /servers/detail and /servers/{server_id} (read-only: servers are created with the tether CLI). */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { TetherService } from '../../service/tether-service.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { Server, ServerListQuery, ServerRef } from '../schemas/compute.ts';
import { baseUrl } from '../views/links.ts';
import { serverRef, serverView } from '../views/server.ts';
import { allTenantsOf, tetherFor } from '../authentication.ts';

export const serverRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['compute'];
  app.get(
    '/servers',
    {
      schema: {
        summary: 'List servers (`name`: exact match)',
        tags,
        params: pathParams(scope, {}),
        querystring: ServerListQuery,
        response: { 200: Type.Object({ servers: Type.Array(ServerRef) }), ...FAULTS },
      },
    },
    async (request) => {
      const servers = await tetherFor(service, request).listServers({
        ...(request.query.name === undefined ? {} : { name: request.query.name }),
        allTenants: allTenantsOf(request, request.query.all_tenants),
      });
      return { servers: servers.map((s) => serverRef(s, baseUrl(request))) };
    },
  );

  app.get(
    '/servers/detail',
    {
      schema: {
        summary: 'List servers with details',
        tags,
        params: pathParams(scope, {}),
        querystring: ServerListQuery,
        response: { 200: Type.Object({ servers: Type.Array(Server) }), ...FAULTS },
      },
    },
    async (request) => {
      const servers = await tetherFor(service, request).listServerDetails({
        ...(request.query.name === undefined ? {} : { name: request.query.name }),
        allTenants: allTenantsOf(request, request.query.all_tenants),
      });
      return { servers: servers.map((s) => serverView(s.instance, s.bdms, baseUrl(request), request.microversion)) };
    },
  );

  app.get(
    '/servers/:server_id',
    {
      schema: {
        summary: 'Show a server (by id; a name is a 404, as in Nova)',
        tags,
        params: pathParams(scope, { server_id: Type.String() }),
        response: { 200: Type.Object({ server: Server }), ...FAULTS },
      },
    },
    async (request) => {
      const { instance, bdms } = await tetherFor(service, request).showServerDetail({ id: request.params.server_id });
      return { server: serverView(instance, bdms, baseUrl(request), request.microversion) };
    },
  );
};
