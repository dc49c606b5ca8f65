/**
 * Spans around block-storage calls (the local volume service or Cinder, through the BlockStorage
 * interface): `blockstorage.createAttachment`, `blockstorage.updateAttachment`, … with the volume id,
 * instance uuid, attachment id, and for updateAttachment the connector's host and device name.
 * The connection_info a call returns (which may hold CHAP passwords or cephx keys) is never recorded.
 */
import type { BlockStorage } from '../blockstorage/block-storage.ts';
import { ATTR, withCallSpans, type TracedCalls } from './spans.ts';

const volume = ([volumeId]: unknown[]) => ({ [ATTR.volumeId]: String(volumeId) });
const volumeAndInstance = ([volumeId, instanceUuid]: unknown[]) => ({ [ATTR.volumeId]: String(volumeId), [ATTR.instanceUuid]: String(instanceUuid) });
const attachment = ([attachmentId]: unknown[]) => ({ [ATTR.attachmentId]: String(attachmentId) });

const BLOCK_STORAGE_CALLS: TracedCalls = {
  getVolume: volume,
  createAttachment: volumeAndInstance,
  findAttachment: volumeAndInstance,
  updateAttachment: ([attachmentId, connector]) => {
    const c = connector as { host?: unknown; mountpoint?: unknown } | undefined;
    return {
      [ATTR.attachmentId]: String(attachmentId),
      ...(typeof c?.host === 'string' ? { [ATTR.host]: c.host } : {}),
      ...(typeof c?.mountpoint === 'string' ? { [ATTR.device]: c.mountpoint } : {}),
    };
  },
  completeAttachment: attachment,
  deleteAttachment: attachment,
  beginDetaching: volume,
  rollDetaching: volume,
  deleteVolume: volume,
  // the extend of an in-use volume (embedded service)
  beginExtending: volume,
  rollExtending: volume,
  growVolume: volume,
  finishExtending: volume,
  // repair
  syncStatusWithAttachments: volume,
  // LUKS volumes: the span names the volume only, never the key id, the key or the cipher spec.
  getVolumeEncryption: volume,
  getEncryptionKey: volume,
};

/**
 * The block storage (or the part of it a caller holds, such as the compute agent's encryption
 * source) with a span around each call above; itself when tracing is off.
 */
export function tracedBlockStorage<T extends Partial<BlockStorage>>(blockStorage: T): T {
  const kind = blockStorage.kind;
  return withCallSpans(blockStorage, 'blockstorage', BLOCK_STORAGE_CALLS, kind ? { [ATTR.blockStorageKind]: kind } : {});
}
