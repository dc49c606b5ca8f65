/** Cinder's volume representation, by microversion, for tether's embedded volume service. */
import type { Static } from '@fastify/type-provider-typebox';
import type { Volume } from '../../domain/types.ts';
import type { Volume as VolumeSchema, VolumeRef } from '../schemas/volume.ts';
import { USER_ID } from './server.ts';
import { cinderTime, resourceLinks } from './links.ts';

/** The embedded service's volume types: Cinder's default, and `luks` (encrypted, front-end LUKS). */
export const DEFAULT_VOLUME_TYPE = '__DEFAULT__';
export const LUKS_VOLUME_TYPE = 'luks';

/** Cinder's `host@backend#pool` of the embedded volume service. */
const VOLUME_HOST = 'tether@local#local';

export function volumeRef(volume: Volume, base: string): Static<typeof VolumeRef> {
  return { id: volume.id, name: volume.name, links: resourceLinks(base, 'v3', `${volume.projectId}/volumes/${volume.id}`) };
}

export function volumeView(volume: Volume, base: string, microversion: number): Static<typeof VolumeSchema> {
  const view: Static<typeof VolumeSchema> = {
    ...volumeRef(volume, base),
    description: volume.description ?? null,
    status: volume.status,
    size: volume.size,
    availability_zone: volume.availabilityZone,
    created_at: cinderTime(volume.createdAt),
    updated_at: volume.updatedAt ? cinderTime(volume.updatedAt) : null,
    // Cinder lists only the attachments that are attached (not those reserved or in flight).
    attachments: volume.attachments
      .filter((a) => a.status === 'attached')
      .map((a) => ({
        id: volume.id,
        attachment_id: a.attachmentId,
        volume_id: volume.id,
        server_id: a.serverId,
        host_name: a.hostName,
        device: a.device,
        attached_at: a.attachedAt === null ? null : cinderTime(a.attachedAt),
      })),
    volume_type: volume.encrypted ? LUKS_VOLUME_TYPE : DEFAULT_VOLUME_TYPE,
    snapshot_id: null,
    source_volid: null,
    metadata: volume.metadata ?? {},
    links: resourceLinks(base, 'v3', `${volume.projectId}/volumes/${volume.id}`),
    user_id: USER_ID,
    bootable: String(volume.bootable),
    encrypted: volume.encrypted,
    replication_status: null,
    consistencygroup_id: null,
    multiattach: volume.multiattach,
    'os-vol-tenant-attr:tenant_id': volume.projectId,
    'os-vol-host-attr:host': VOLUME_HOST,
    'os-vol-mig-status-attr:migstat': null,
    'os-vol-mig-status-attr:name_id': null,
  };
  if (microversion >= 13) view.group_id = null;
  if (microversion >= 48) {
    view.shared_targets = false;
    view.service_uuid = null;
  }
  if (microversion >= 63) view.volume_type_id = null;
  if (microversion >= 65) view.consumes_quota = true;
  return view;
}
