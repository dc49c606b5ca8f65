/**
 * POST /v3/volumes/{id}/action: Cinder's volume actions. tether's volume service takes `os-extend`:
 * an available volume at any version, an in-use one from 3.42 (the ExtendVolume saga grows the disk
 * under the running server; 202 once the volume is `extending`). Any other action is Cinder's 400.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { TetherService } from '../../service/tether-service.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, NoBody, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { VolumeAction } from '../schemas/volume.ts';
import { tetherFor } from '../authentication.ts';

/** Cinder 3.42: os-extend of an in-use volume. */
const EXTEND_IN_USE = 42;

export const volumeActionRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  app.post(
    '/volumes/:volume_id/action',
    {
      schema: {
        summary: 'A volume action: `os-extend` (`openstack volume set --size`; an in-use volume from 3.42, grown under its running server)',
        tags: ['block-storage'],
        params: pathParams(scope, { volume_id: Type.String() }),
        body: VolumeAction,
        response: { 202: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      const extend = request.body['os-extend'];
      if (!extend) throw new ApiError(400, `There is no such action: ${Object.keys(request.body)[0] ?? ''}`);
      await tetherFor(service, request).extendVolume({
        volume: { id: request.params.volume_id },
        newSize: Number(extend.new_size),
        inUse: request.microversion >= EXTEND_IN_USE,
      });
      return reply.code(202).send();
    },
  );
};
