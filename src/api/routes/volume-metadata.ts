/**
 * /v3/volumes/{id}/metadata: Cinder's volume metadata routes, as cinderclient and `openstack volume
 * set/unset --property` use them. From 3.15 a list carries an ETag and a change may carry If-Match:
 * metadata changed since it was read answers 412.
 */
import { createHash } from 'node:crypto';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TetherService } from '../../service/tether-service.ts';
import { ApiError } from '../errors.ts';
import { FAULTS, NoBody, pathParams, type ScopeOptions } from '../schemas/common.ts';
import { Metadata, MetaBody, MetadataBody } from '../schemas/volume.ts';
import { tetherFor } from '../authentication.ts';

/** Cinder 3.15: ETags on volume metadata. */
const ETAGS = 15;

/** Python's json.dumps (", " and ": " separators, non-ASCII as \uXXXX) of {"metadata": …}: what Cinder hashes. */
function pythonJson(metadata: Record<string, string>): string {
  const text = (s: string) => JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `{"metadata": {${Object.entries(metadata).map(([k, v]) => `${text(k)}: ${text(v)}`).join(', ')}}}`;
}

/** Cinder's ETag of a volume's metadata: MD5 of its JSON. */
export function metadataEtag(metadata: Record<string, string>): string {
  return createHash('md5').update(pythonJson(metadata)).digest('hex');
}

/** The If-Match ETags of a request (null when it has none). */
function ifMatch(request: FastifyRequest): string[] | null {
  const raw = request.headers['if-match'];
  if (raw === undefined) return null;
  return (Array.isArray(raw) ? raw.join(',') : raw).split(',').map((t) => t.trim().replace(/^W\//, '').replace(/^"|"$/g, ''));
}

export const volumeMetadataRoutes: FastifyPluginAsyncTypebox<{ service: TetherService } & ScopeOptions> = async (app, { service, ...scope }) => {
  const tags = ['block-storage'];
  const volumeParams = pathParams(scope, { volume_id: Type.String() });
  const keyParams = pathParams(scope, { volume_id: Type.String(), key: Type.String() });
  const base = '/volumes/:volume_id/metadata';

  /** From 3.15, a change with If-Match that no longer matches is a 412 (and changes nothing). */
  async function preconditionFailed(request: FastifyRequest, reply: FastifyReply, tether: TetherService, volumeId: string): Promise<boolean> {
    const tags = request.microversion >= ETAGS ? ifMatch(request) : null;
    if (tags === null || tags.includes('*')) return false;
    if (tags.includes(metadataEtag(await tether.volumeMetadata({ id: volumeId })))) return false;
    await reply.code(412).send();
    return true;
  }

  app.get(
    base,
    {
      schema: {
        summary: "A volume's metadata (from 3.15 with its ETag)",
        tags,
        params: volumeParams,
        response: { 200: Type.Object({ metadata: Metadata }), ...FAULTS },
      },
    },
    async (request, reply) => {
      const metadata = await tetherFor(service, request).volumeMetadata({ id: request.params.volume_id });
      if (request.microversion >= ETAGS) reply.header('ETag', metadataEtag(metadata));
      return { metadata };
    },
  );

  app.post(
    base,
    {
      schema: {
        summary: "Add or change keys of a volume's metadata (`openstack volume set --property`); answers all of it",
        tags,
        params: volumeParams,
        body: MetadataBody,
        response: { 200: Type.Object({ metadata: Metadata }), ...FAULTS },
      },
    },
    async (request) => ({
      metadata: await tetherFor(service, request).setVolumeMetadata({ id: request.params.volume_id }, request.body.metadata, { replace: false }),
    }),
  );

  app.put(
    base,
    {
      schema: {
        summary: "Replace all of a volume's metadata (from 3.15, If-Match: 412 when it changed since it was read)",
        tags,
        params: volumeParams,
        body: MetadataBody,
        response: { 200: Type.Object({ metadata: Metadata }), 412: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      const tether = tetherFor(service, request);
      if (await preconditionFailed(request, reply, tether, request.params.volume_id)) return reply;
      return { metadata: await tether.setVolumeMetadata({ id: request.params.volume_id }, request.body.metadata, { replace: true }) };
    },
  );

  app.get(
    `${base}/:key`,
    {
      schema: {
        summary: "One key of a volume's metadata",
        tags,
        params: keyParams,
        response: { 200: Type.Object({ meta: Metadata }), ...FAULTS },
      },
    },
    async (request) => {
      const { volume_id: volumeId, key } = request.params;
      const metadata = await tetherFor(service, request).volumeMetadata({ id: volumeId });
      if (!Object.hasOwn(metadata, key)) throw new ApiError(404, `Volume ${volumeId} has no metadata with key ${key}.`);
      return { meta: { [key]: metadata[key]! } };
    },
  );

  app.put(
    `${base}/:key`,
    {
      schema: {
        summary: "Set one key of a volume's metadata (the body names the same key)",
        tags,
        params: keyParams,
        body: MetaBody,
        response: { 200: Type.Object({ meta: Metadata }), 412: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      const { volume_id: volumeId, key } = request.params;
      const meta = request.body.meta;
      if (!Object.hasOwn(meta, key)) throw new ApiError(400, 'Request body and URI mismatch');
      const tether = tetherFor(service, request);
      if (await preconditionFailed(request, reply, tether, volumeId)) return reply;
      await tether.setVolumeMetadata({ id: volumeId }, meta, { replace: false });
      return { meta };
    },
  );

  app.delete(
    `${base}/:key`,
    {
      schema: {
        summary: "Remove one key of a volume's metadata (`openstack volume unset --property`)",
        tags,
        params: keyParams,
        response: { 200: NoBody, ...FAULTS },
      },
    },
    async (request, reply) => {
      await tetherFor(service, request).deleteVolumeMetadata({ id: request.params.volume_id }, request.params.key);
      return reply.code(200).send();
    },
  );
};
