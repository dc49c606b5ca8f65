/** /v3/volumes: tether's embedded volume service, served the way Cinder serves volumes. */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { TetherService } from '../../service/tether-service.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, NoBody, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { CreateVolume, UpdateVolume, Volume, VolumeListQuery, VolumeRef } from '../schemas/volume.ts';
import { baseUrl } from '../views/links.ts';
import { DEFAULT_VOLUME_TYPE, LUKS_VOLUME_TYPE, volumeRef, volumeView } from '../views/volume.ts';
import { allTenantsOf, tetherFor } from '../authentication.ts';

const SOURCES = ['snapshot_id', 'source_volid', 'imageRef', 'backup_id', 'consistencygroup_id', 'group_id'] as const;

export const blockStorageRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['block-storage'];
  const noParams = pathParams(scope, {});
  const volumeParams = pathParams(scope, { volume_id: Type.String() });

  app.get(
    '/volumes',
    {
      schema: {
        summary: 'List volumes (`name`: exact match; `all_tenants` accepted)',
        tags,
        params: noParams,
        querystring: VolumeListQuery,
        response: { 200: Type.Object({ volumes: Type.Array(VolumeRef) }), ...FAULTS },
      },
    },
    async (request) => {
      const volumes = await tetherFor(service, request).listVolumes({
        ...(request.query.name === undefined ? {} : { name: request.query.name }),
        allTenants: allTenantsOf(request, request.query.all_tenants),
      });
      return { volumes: volumes.map((v) => volumeRef(v, baseUrl(request))) };
    },
  );

  app.get(
    '/volumes/detail',
    {
      schema: {
        summary: 'List volumes with details',
        tags,
        params: noParams,
        querystring: VolumeListQuery,
        response: { 200: Type.Object({ volumes: Type.Array(Volume) }), ...FAULTS },
      },
    },
    async (request) => {
      const volumes = await tetherFor(service, request).listVolumes({
        ...(request.query.name === undefined ? {} : { name: request.query.name }),
        allTenants: allTenantsOf(request, request.query.all_tenants),
      });
      return { volumes: volumes.map((v) => volumeView(v, baseUrl(request), request.microversion)) };
    },
  );

  app.get(
    '/volumes/:volume_id',
    {
      schema: {
        summary: 'Show a volume (by id)',
        tags,
        params: volumeParams,
        response: { 200: Type.Object({ volume: Volume }), ...FAULTS },
      },
    },
    async (request) => {
      const volume = await tetherFor(service, request).showVolume({ id: request.params.volume_id });
      return { volume: volumeView(volume, baseUrl(request), request.microversion) };
    },
  );

  app.get(
    '/volumes/:volume_id/encryption',
    {
      schema: {
        summary: "A volume's encryption metadata, as Cinder answers it (encryption_key_id null for a plain volume; never the key)",
        tags,
        params: volumeParams,
        response: {
          200: Type.Object({
            encryption_key_id: Type.Union([Type.String(), Type.Null()]),
            provider: Type.Optional(Type.String()),
            cipher: Type.Optional(Type.String()),
            key_size: Type.Optional(Type.Integer()),
            control_location: Type.Optional(Type.String()),
          }),
          ...FAULTS,
        },
      },
    },
    async (request) => {
      const e = await tetherFor(service, request).volumeEncryption({ id: request.params.volume_id });
      if (!e) return { encryption_key_id: null };
      return { encryption_key_id: e.encryptionKeyId, provider: e.provider, cipher: e.cipher, key_size: e.keySize, control_location: e.controlLocation };
    },
  );

  app.post(
    '/volumes',
    {
      schema: {
        summary: 'Create a blank volume (answers 202 with the volume, available)',
        tags,
        params: noParams,
        body: CreateVolume,
        response: { 202: Type.Object({ volume: Volume }), ...FAULTS },
      },
    },
    async (request, reply) => {
      const spec = request.body.volume;
      const sources = SOURCES.filter((key) => spec[key] != null);
      if (sources.length > 0) throw new ApiError(400, `tether's volume service creates blank volumes only (${sources.join(', ')} not supported).`);
      if (spec.volume_type != null && spec.volume_type !== DEFAULT_VOLUME_TYPE && spec.volume_type !== LUKS_VOLUME_TYPE) {
        throw new ApiError(404, `Volume type with name ${spec.volume_type} could not be found.`);
      }
      const volume = await tetherFor(service, request).createVolume({
        ...(spec.metadata ? { metadata: spec.metadata } : {}),
        name: spec.name ?? null,
        size: spec.size,
        description: spec.description ?? null,
        multiattach: spec.multiattach ?? false,
        volumeType: spec.volume_type ?? null,
        ...(spec.availability_zone ? { availabilityZone: spec.availability_zone } : {}),
      });
      return reply.code(202).send({ volume: volumeView(volume, baseUrl(request), request.microversion) });
    },
  );

  app.put(
    '/volumes/:volume_id',
    {
      schema: {
        summary: 'Update a volume: name, description, metadata (replaces all of it); `openstack volume set --name/--description`',
        tags,
        params: volumeParams,
        body: UpdateVolume,
        response: { 200: Type.Object({ volume: Volume }), ...FAULTS },
      },
    },
    async (request) => {
      const body = request.body.volume;
      // Cinder: `name`/`description`, or v2's display_name/display_description (the short names win)
      const name = body.name !== undefined ? body.name : body.display_name;
      const description = body.description !== undefined ? body.description : body.display_description;
      const volume = await tetherFor(service, request).updateVolume(
        { id: request.params.volume_id },
        {
          ...(name !== undefined ? { name: name === null ? null : name.trim() } : {}),
          ...(description !== undefined ? { description: description === null ? null : description.trim() } : {}),
          ...(body.metadata !== undefined ? { metadata: body.metadata } : {}),
        },
      );
      return { volume: volumeView(volume, baseUrl(request), request.microversion) };
    },
  );

  app.delete(
    '/volumes/:volume_id',
    {
      schema: {
        summary: 'Delete an available volume',
        tags,
        params: volumeParams,
        response: { 202: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      await tetherFor(service, request).deleteVolume({ id: request.params.volume_id });
      return reply.code(202).send();
    },
  );
};
