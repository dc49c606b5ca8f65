/** Nova's volumeAttachment representation, by microversion. */
import type { Static } from '@fastify/type-provider-typebox';
import type { BlockDeviceMapping } from '../../domain/types.ts';
import type { VolumeAttachment } from '../schemas/compute.ts';

/** What both a BDM and an attach reservation (AttachReservation fits as is) say about one attachment. */
export interface AttachmentFacts {
  instanceUuid: string;
  volumeId: string;
  device: string | null;
  tag: string | null;
  deleteOnTermination: boolean;
  attachmentId: string | null;
  bdmUuid: string;
}

export function factsOfBdm(bdm: BlockDeviceMapping & { volumeId: string }): AttachmentFacts {
  return {
    instanceUuid: bdm.instanceUuid,
    volumeId: bdm.volumeId,
    device: bdm.deviceName,
    tag: bdm.tag,
    deleteOnTermination: bdm.deleteOnTermination,
    attachmentId: bdm.attachmentId,
    bdmUuid: bdm.uuid,
  };
}

/**
 * `id, serverId, volumeId, device` (+ `tag` from 2.70, `delete_on_termination` from 2.79). From
 * 2.89, GET and list (not POST) drop `id` and add `attachment_id` and `bdm_uuid`.
 */
export function attachmentView(a: AttachmentFacts, microversion: number, { forCreate = false } = {}): Static<typeof VolumeAttachment> {
  const with289 = microversion >= 89 && !forCreate;
  const view: Static<typeof VolumeAttachment> = {
    ...(with289 ? {} : { id: a.volumeId }),
    serverId: a.instanceUuid,
    volumeId: a.volumeId,
    device: a.device,
  };
  if (microversion >= 70) view.tag = a.tag;
  if (microversion >= 79) view.delete_on_termination = a.deleteOnTermination;
  if (with289) {
    view.attachment_id = a.attachmentId;
    view.bdm_uuid = a.bdmUuid;
  }
  return view;
}
