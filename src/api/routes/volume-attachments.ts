/**
 * /servers/{server_id}/os-volume_attachments: list, show, attach (POST), update (PUT: 2.85's
 * delete_on_termination, or a swap) and detach (DELETE), with Nova's microversion rules. POST
 * answers once the device name and the volume are reserved; the rest of the attach continues in its
 * workflow.
 */
import { Type, type FastifyPluginAsyncTypebox, type Static } from '@fastify/type-provider-typebox';
import { TetherError } from '../../errors.ts';
import type { TetherService } from '../../service/tether-service.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, NoBody, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { AttachmentListQuery, CreateVolumeAttachment, UpdateVolumeAttachment, VolumeAttachment, novaBoolean } from '../schemas/compute.ts';
import { attachmentView, factsOfBdm } from '../views/volume-attachment.ts';
import { tetherFor } from '../authentication.ts';

/** Request fields that exist only from a microversion on: below it, Nova's schema refuses them (400). */
function refuseNewerFields(body: Static<typeof CreateVolumeAttachment>['volumeAttachment'], microversion: number): void {
  const newer = [
    ...(body.tag !== undefined && microversion < 49 ? ['tag (2.49)'] : []),
    ...(body.delete_on_termination !== undefined && microversion < 79 ? ['delete_on_termination (2.79)'] : []),
  ];
  if (newer.length > 0) {
    throw new ApiError(
      400,
      `Invalid input for field/attribute volumeAttachment. Additional properties are not allowed at microversion 2.${microversion}: ${newer.join(', ')}.`,
    );
  }
}

/** 2.85: PUT may change delete_on_termination (below it, PUT is a swap and takes volumeId only). */
const UPDATE_ATTACHMENT = 85;
/** Compute API 2.101: POST os-volume_attachments answers 202 with no body (Nova's asynchronous attach). */
const ASYNC_ATTACH = 101;

function notAttached(serverId: string, volumeId: string): TetherError {
  return new TetherError('VolumeNotAttached', `Instance ${serverId} is not attached to volume ${volumeId}`);
}

export const volumeAttachmentRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['compute'];
  const base = '/servers/:server_id/os-volume_attachments';
  const serverParams = pathParams(scope, { server_id: Type.String() });
  const attachmentParams = pathParams(scope, { server_id: Type.String(), volume_id: Type.String() });

  const attachmentsOf = async (tether: TetherService, serverId: string) => {
    const { bdms } = await tether.listAttachments({ id: serverId });
    return bdms.flatMap((b) => (b.volumeId === null ? [] : [factsOfBdm({ ...b, volumeId: b.volumeId })]));
  };

  app.get(
    base,
    {
      schema: {
        summary: "List a server's volume attachments",
        tags,
        params: serverParams,
        querystring: AttachmentListQuery,
        response: { 200: Type.Object({ volumeAttachments: Type.Array(VolumeAttachment) }), ...FAULTS },
      },
    },
    async (request) => {
      const { limit, offset = 0 } = request.query;
      // the query string's coercion lets "1e400" and "Infinity" through as integers
      for (const [name, value] of [['limit', limit], ['offset', offset]] as const) {
        if (value !== undefined && !Number.isSafeInteger(value)) throw new ApiError(400, `Invalid input for field/attribute ${name}: must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}.`);
      }
      // from 2.89 an attachment is listed once it has its block-storage attachment id (Nova bug 2160224)
      const all = (await attachmentsOf(tetherFor(service, request), request.params.server_id)).filter((a) => request.microversion < 89 || a.attachmentId !== null);
      const page = all.slice(offset, limit === undefined ? undefined : offset + limit);
      return { volumeAttachments: page.map((a) => attachmentView(a, request.microversion)) };
    },
  );

  app.get(
    `${base}/:volume_id`,
    {
      schema: {
        summary: 'Show one volume attachment (from 2.89, a 404 while the block-storage attachment is not created yet)',
        tags,
        params: attachmentParams,
        response: { 200: Type.Object({ volumeAttachment: VolumeAttachment }), ...FAULTS },
      },
    },
    async (request) => {
      const { server_id: serverId, volume_id: volumeId } = request.params;
      const found = (await attachmentsOf(tetherFor(service, request), serverId)).find((a) => a.volumeId === volumeId.toLowerCase());
      if (!found || (request.microversion >= 89 && found.attachmentId === null)) throw notAttached(serverId, volumeId);
      return { volumeAttachment: attachmentView(found, request.microversion) };
    },
  );

  app.post(
    base,
    {
      schema: {
        summary: 'Attach a volume: answers once the device name and the volume are reserved, 200 with the attachment (202 and no body from 2.101)',
        tags,
        params: serverParams,
        body: CreateVolumeAttachment,
        response: { 200: Type.Object({ volumeAttachment: VolumeAttachment }), 202: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      const body = request.body.volumeAttachment;
      refuseNewerFields(body, request.microversion);
      const { reservation } = await tetherFor(service, request).attachVolume({
        server: { id: request.params.server_id },
        volume: { id: body.volumeId },
        device: body.device ?? null,
        tag: body.tag ?? null,
        deleteOnTermination: body.delete_on_termination ?? false,
        // attach to a shelved server needs 2.20 (Nova answers 409 below it)
        refuseShelved: request.microversion < 20,
      });
      if (request.microversion >= ASYNC_ATTACH) return reply.code(202).send();
      return { volumeAttachment: attachmentView(reservation, request.microversion, { forCreate: true }) };
    },
  );

  app.put(
    `${base}/:volume_id`,
    {
      schema: {
        summary: 'Update a volume attachment (2.85: delete_on_termination) or swap its volume (another volumeId: only while the block storage migrates it)',
        tags,
        params: attachmentParams,
        body: UpdateVolumeAttachment,
        response: { 202: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      const body = request.body.volumeAttachment;
      const { server_id: serverId, volume_id: volumeId } = request.params;
      const tether = tetherFor(service, request);
      const server = { id: serverId };
      if (request.microversion < UPDATE_ATTACHMENT) {
        const extra = Object.keys(body).filter((k) => k !== 'volumeId');
        if (extra.length > 0) {
          throw new ApiError(
            400,
            `Invalid input for field/attribute volumeAttachment. Additional properties are not allowed (${extra.map((k) => `'${k}'`).join(', ')} ${extra.length > 1 ? 'were' : 'was'} unexpected)`,
          );
        }
        // below 2.85 a PUT is always a swap (Nova's original behaviour)
        await tether.swapVolume({ server, oldVolumeId: volumeId, newVolumeId: body.volumeId });
        return reply.code(202).send();
      }
      // the attachment's own fields first (the old volume's, as during a swap), then a swap when volumeId differs
      if (body.volumeId === volumeId) {
        await tether.updateVolumeAttachment({
          server,
          volumeId,
          changes: {
            ...(body.id !== undefined ? { id: body.id } : {}),
            ...(body.serverId !== undefined ? { serverId: body.serverId } : {}),
            ...(body.device !== undefined ? { device: body.device } : {}),
            ...(body.tag !== undefined ? { tag: body.tag } : {}),
            ...(body.delete_on_termination !== undefined ? { deleteOnTermination: novaBoolean(body.delete_on_termination) } : {}),
          },
        });
        return reply.code(202).send();
      }
      await tether.swapVolume({ server, oldVolumeId: volumeId, newVolumeId: body.volumeId });
      return reply.code(202).send();
    },
  );

  app.delete(
    `${base}/:volume_id`,
    {
      schema: {
        summary: 'Detach a volume: answers 202 once the detach is accepted',
        tags,
        params: attachmentParams,
        response: { 202: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      await tetherFor(service, request).detachVolume({
        server: { id: request.params.server_id },
        volume: request.params.volume_id,
        refuseShelved: request.microversion < 20,
      });
      return reply.code(202).send();
    },
  );
};
