/**
 * Disks on a compute host: hot-plug and unplug of a volume's `<disk>`, the libvirt secrets it needs
 * (CHAP/cephx, a LUKS passphrase fetched here from the block storage's key manager), and the disks
 * QEMU still holds that libvirt lost track of (removed before a plug and after an unplug).
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Database } from '../../src/db/database.ts';
import { bdmConnectionInfo, getLiveBdmByUuid } from '../../src/db/block-device-mappings.ts';
import { stripDev } from '../../src/domain/device-names.ts';
import type { ConnectionInfo } from '../../src/domain/types.ts';
import { removeOrphanDisks } from '../../src/host/qemu-orphan-disks.ts';
import { diskElements } from '../../src/host/domain-disks.ts';
import { authSecretUuid, defineEncryptionSecret, encryptionSecretUuid, ensureAuthSecret } from '../../src/host/disk-secrets.ts';
import { VolumeEncryptionError, type BlockStorage } from '../../src/blockstorage/block-storage.ts';
import { passphraseOf } from '../../src/blockstorage/volume-key-store.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { GuestHeldDisk, unplugDisk } from '../../src/host/unplug-disk.ts';
import { buildDiskXml } from '../../src/libvirt/disk-xml.ts';
import type { FaultPoints } from '../fault-points.ts';
import { businessFailure } from '../failures.ts';
import { libvirtFailure } from './libvirt-failures.ts';
import { createStepGuard } from './step-guard.ts';

export interface DetachDiskOptions {
  /** How long to wait for the guest to release the disk before re-sending the unplug. */
  unplugWaitMs?: number;
  /** Give up (retryable failure) after this many unplug requests in one attempt. */
  unplugRequests?: number;
}

/** Where a compute host gets an encrypted volume's metadata and key: the block storage (and its key manager). */
export type VolumeEncryptionSource = Pick<BlockStorage, 'getVolumeEncryption' | 'getEncryptionKey'>;

/**
 * For a volume whose connection_info says `encrypted` (as Nova's attach does): fetch its encryption
 * metadata and key here, on the host, and put the LUKS passphrase into a libvirt secret. Returns
 * the secret's UUID for the disk's `<encryption>`, or undefined for a plain volume. The key lives
 * only in this function's memory: never returned, logged or stored.
 */
export async function ensureEncryptionSecret(
  deps: { libvirt: Pick<LibvirtConnection, 'defineSecret'>; volumeEncryption: VolumeEncryptionSource | undefined; host: string },
  volumeId: string,
  connectionInfo: ConnectionInfo,
): Promise<string | undefined> {
  if (connectionInfo.data.encrypted !== true) return undefined;
  try {
    if (!deps.volumeEncryption) throw new VolumeEncryptionError(`the compute agent of host ${deps.host} was started without access to the block storage's keys`);
    const encryption = await deps.volumeEncryption.getVolumeEncryption(volumeId);
    if (!encryption) return undefined; // decrypted by the storage back end
    const key = await deps.volumeEncryption.getEncryptionKey(volumeId, encryption);
    const passphrase = passphraseOf(key);
    try {
      return await defineEncryptionSecret(deps.libvirt, volumeId, connectionInfo, passphrase);
    } finally {
      key.fill(0);
      passphrase.fill(0);
    }
  } catch (err) {
    if (err instanceof VolumeEncryptionError) {
      throw ApplicationFailure.nonRetryable(`Encrypted volume ${volumeId} cannot be attached: ${err.message}`, 'VolumeEncryptionUnavailable');
    }
    throw err;
  }
}

/** Volume ids of the domain's disks that use tether's secret of a kind (LUKS passphrase, or CHAP/cephx auth). */
export function diskVolumesWithSecret(domainXml: string, secretUuid: (volumeId: string) => string): string[] {
  return diskElements(domainXml)
    .filter((d) => d.serial !== null && d.xml.includes(`uuid='${secretUuid(d.serial)}'`))
    .map((d) => d.serial!);
}

export function createDiskActivities(deps: {
  db: Database;
  libvirt: LibvirtConnection;
  host: string;
  faults: FaultPoints;
  detach?: DetachDiskOptions;
  /** Needed to attach encrypted volumes; without it their attach fails (non-retryable) and rolls back. */
  volumeEncryption?: VolumeEncryptionSource;
}) {
  const { db, libvirt, host, faults, volumeEncryption } = deps;
  const guard = createStepGuard({ db, host });
  const unplugWaitMs = deps.detach?.unplugWaitMs ?? 5_000;
  const unplugRequests = deps.detach?.unplugRequests ?? 3;

  /** Removes the disks QEMU holds that the live XML does not list (src/host/qemu-orphan-disks.ts). */
  // Best effort: when QEMU's monitor cannot be asked (no libvirt-qemu, a busy monitor), the plug or
  // unplug goes on as before and a real conflict still fails it clearly.
  async function repairOrphanDisks(instanceUuid: string): Promise<void> {
    try {
      const removed = await removeOrphanDisks(libvirt, instanceUuid);
      if (removed.length > 0) {
        Context.current().log.warn('removed disks QEMU held that libvirt had lost track of', { instanceUuid, orphans: removed.map((o) => ({ id: o.id, file: o.file })) });
      }
    } catch (err) {
      Context.current().log.warn('could not look for disks QEMU holds behind libvirt', { instanceUuid, error: (err as Error).message });
    }
  }

  /** Removes the volume's libvirt secrets (CHAP/cephx and LUKS passphrase); no-op for those that do not exist. */
  async function removeVolumeSecrets(volumeId: string): Promise<void> {
    await libvirt.undefineSecret(authSecretUuid(volumeId));
    await libvirt.undefineSecret(encryptionSecretUuid(volumeId));
  }

  return {
    /**
     * Hot-plug the volume's disk: AFFECT_CONFIG always, AFFECT_LIVE when the domain runs; only the
     * parts not already present are attached, and presence is confirmed in the XML afterwards.
     */
    async attachDisk(input: { instanceUuid: string; bdmUuid: string; volumeId: string; generation?: number }): Promise<{ target: string; live: boolean }> {
      faults.check('attachDisk', 'before');
      await guard('attachDisk', input);
      const bdm = await getLiveBdmByUuid(db, input.bdmUuid);
      const connectionInfo = await bdmConnectionInfo(db, input.bdmUuid);
      if (!bdm?.deviceName || !connectionInfo) {
        throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} has no device name or connection info`, 'DiskAttachFailed');
      }
      const target = stripDev(bdm.deviceName);
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info) throw ApplicationFailure.nonRetryable(`Domain of instance ${input.instanceUuid} is not defined on host ${host}`, 'DiskAttachFailed');
        const present = async (live: boolean): Promise<boolean> => {
          const xml = await libvirt.getXml(input.instanceUuid, { inactive: !live });
          const byTarget = diskElements(xml).find((d) => d.target === target);
          if (byTarget && byTarget.serial !== input.volumeId) {
            throw businessFailure('DevicePathInUse', `The device ${bdm.deviceName} of the domain holds another disk (${byTarget.serial ?? 'no serial'}).`);
          }
          return byTarget !== undefined;
        };
        const needConfig = !(await present(false));
        const needLive = info.active && !(await present(true));
        // A disk QEMU kept when libvirtd died mid-hot-plug would take this one's address (and is a
        // volume the guest still sees): make QEMU agree with libvirt's XML first.
        if (needLive) await repairOrphanDisks(input.instanceUuid);
        if (needConfig || needLive) {
          const authSecretUuid = await ensureAuthSecret(libvirt, input.volumeId, connectionInfo);
          const encryptionSecretUuid = await ensureEncryptionSecret({ libvirt, volumeEncryption, host }, input.volumeId, connectionInfo);
          if (encryptionSecretUuid) faults.check('defineEncryptionSecret', 'after');
          const xml = buildDiskXml({
            connectionInfo,
            targetDev: target,
            bus: bdm.diskBus ?? 'scsi',
            deviceType: (bdm.deviceType as 'disk' | 'cdrom' | 'lun' | null) ?? 'disk',
            serial: input.volumeId,
            ...(authSecretUuid ? { authSecretUuid } : {}),
            ...(encryptionSecretUuid ? { encryptionSecretUuid } : {}),
          });
          await libvirt.attachDevice(input.instanceUuid, xml, { config: needConfig, live: needLive });
        }
        if (!(await present(false)) || (info.active && !(await present(true)))) {
          throw ApplicationFailure.retryable(`Disk ${target} not found in the domain after attach`, 'DiskAttachUnconfirmed');
        }
        faults.check('attachDisk', 'after');
        return { target, live: info.active };
      } catch (err) {
        throw libvirtFailure(err, 'DiskAttachFailed');
      }
    },

    /**
     * Remove the volume's disk (found by serial) from the persistent config and the live domain, and
     * wait until it has left the live XML: a guest may take time, or ignore the unplug, in which case
     * the unplug is re-sent and finally the attempt fails (retryable) so the workflow can retry.
     * A no-op when the disk is not there.
     */
    async detachDisk(input: { instanceUuid: string; volumeId: string; generation?: number }): Promise<{ removed: boolean }> {
      faults.check('detachDisk', 'before');
      await guard('detachDisk', input);
      const ctx = Context.current();
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info) {
          // No domain, no disk: a rollback after the secrets were defined still removes them.
          await removeVolumeSecrets(input.volumeId);
          return { removed: false };
        }
        const { removed } = await unplugDisk(libvirt, input.instanceUuid, input.volumeId, info.active, {
          waitMs: unplugWaitMs,
          requests: unplugRequests,
          onWait: (request) => ctx.heartbeat({ request }),
          signal: ctx.cancellationSignal,
        });
        // …and no disk QEMU kept behind libvirt's back (libvirtd killed during an earlier unplug or plug).
        if (info.active) await repairOrphanDisks(input.instanceUuid);
        await removeVolumeSecrets(input.volumeId);
        faults.check('detachDisk', 'after');
        return { removed };
      } catch (err) {
        // The unplug was already retried here, as Nova's driver does; retrying the activity would only repeat it.
        if (err instanceof GuestHeldDisk) throw ApplicationFailure.nonRetryable(err.message, 'DiskDetachTimeout');
        throw libvirtFailure(err, 'DiskDetachFailed');
      }
    },
  };
}

export type DiskActivities = ReturnType<typeof createDiskActivities>;
