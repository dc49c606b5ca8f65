/**
 * /v3/attachments (Cinder 3.27): the embedded volume service's attachments, read-only here (tether
 * makes them itself, in its sagas): list, detailed list, show. `openstack volume attachment
 * list/show` at --os-volume-api-version 3.27 and later. Below 3.27 these routes do not exist (404).
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { TetherService } from '../../service/tether-service.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { AttachmentDetail, AttachmentListQuery, AttachmentSummary } from '../schemas/volume.ts';
import { attachmentDetail, attachmentSummary } from '../views/block-storage-attachment.ts';
import { allTenantsOf, tetherFor } from '../authentication.ts';
import type { Static } from '@fastify/type-provider-typebox';

/** Cinder 3.27: the attachments API. */
const NEW_ATTACH = 27;

function requireAttachmentsApi(request: FastifyRequest): void {
  if (request.microversion < NEW_ATTACH) throw new ApiError(404, `API version 3.${request.microversion} is not supported on this method.`);
}

export const blockStorageAttachmentRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['block-storage'];
  const noParams = pathParams(scope, {});

  async function list(request: FastifyRequest, query: Static<typeof AttachmentListQuery>) {
    requireAttachmentsApi(request);
    const { limit, offset = 0, marker } = query;
    for (const [name, value] of [['limit', limit], ['offset', offset]] as const) {
      if (value !== undefined && !Number.isSafeInteger(value)) throw new ApiError(400, `Invalid input for field/attribute ${name}: must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}.`);
    }
    const status = query.status ?? query.attach_status;
    const all = await tetherFor(service, request).listVolumeAttachments({
      allTenants: allTenantsOf(request, query.all_tenants),
      ...(query.volume_id !== undefined ? { volumeId: query.volume_id } : {}),
      ...(query.instance_id !== undefined ? { instanceUuid: query.instance_id } : {}),
      ...(status !== undefined ? { status } : {}),
    });
    let from = offset;
    if (marker !== undefined) {
      const at = all.findIndex((a) => a.id === marker);
      if (at < 0) throw new ApiError(400, `marker [${marker}] not found`);
      from = at + 1;
    }
    return all.slice(from, limit === undefined ? undefined : from + limit);
  }

  app.get(
    '/attachments',
    {
      schema: {
        summary: 'List volume attachments (3.27; filters volume_id, instance_id, status; limit, offset, marker)',
        tags,
        params: noParams,
        querystring: AttachmentListQuery,
        response: { 200: Type.Object({ attachments: Type.Array(AttachmentSummary) }), ...FAULTS },
      },
    },
    async (request) => ({ attachments: (await list(request, request.query)).map(attachmentSummary) }),
  );

  app.get(
    '/attachments/detail',
    {
      schema: {
        summary: 'List volume attachments with details (3.27)',
        tags,
        params: noParams,
        querystring: AttachmentListQuery,
        response: { 200: Type.Object({ attachments: Type.Array(AttachmentDetail) }), ...FAULTS },
      },
    },
    async (request) => ({ attachments: (await list(request, request.query)).map(attachmentDetail) }),
  );

  app.get(
    '/attachments/:attachment_id',
    {
      schema: {
        summary: 'Show a volume attachment (3.27)',
        tags,
        params: pathParams(scope, { attachment_id: Type.String() }),
        response: { 200: Type.Object({ attachment: AttachmentDetail }), ...FAULTS },
      },
    },
    async (request) => {
      requireAttachmentsApi(request);
      return { attachment: attachmentDetail(await tetherFor(service, request).showVolumeAttachment(request.params.attachment_id)) };
    },
  );
};
