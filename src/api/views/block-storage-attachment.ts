/** Cinder's attachment representation (attachments API, 3.27): the summary and the detailed view. */
import type { Static } from '@fastify/type-provider-typebox';
import type { VolumeAttachmentRecord } from '../../blockstorage/block-storage.ts';
import type { AttachmentDetail, AttachmentSummary } from '../schemas/volume.ts';
import { cinderTime } from './links.ts';

export function attachmentSummary(a: VolumeAttachmentRecord): Static<typeof AttachmentSummary> {
  return { id: a.id, status: a.status, instance: a.instanceUuid, volume_id: a.volumeId };
}

/** Cinder writes '' for a time that is not set. */
export function attachmentDetail(a: VolumeAttachmentRecord): Static<typeof AttachmentDetail> {
  return {
    ...attachmentSummary(a),
    attached_at: a.attachedAt === null ? '' : cinderTime(a.attachedAt),
    detached_at: '',
    attach_mode: a.attachMode,
    connection_info: a.connectionInfo,
  };
}
