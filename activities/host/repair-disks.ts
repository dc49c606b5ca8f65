/**
 * Host steps of the repair sagas (workflows/repair-volume.ts), on the instance's queue (one activity
 * at a time, in line with its attaches and detaches): what the domain holds of a volume, the libvirt
 * secrets its disk names defined again, and QEMU's orphan disks removed. Putting a disk back and
 * removing one are the attach's and detach's own attachDisk/detachDisk (idempotent, guarded by the
 * repair's generation). On the host's queue: a leaked secret removed.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Database } from '../../src/db/database.ts';
import { bdmConnectionInfo, instanceNeedingVolumeOnHost } from '../../src/db/block-device-mappings.ts';
import type { PairSnapshot } from '../../src/domain/repair-plan.ts';
import { authSecretUuid, encryptionSecretUuid, ensureAuthSecret } from '../../src/host/disk-secrets.ts';
import { removeOrphanDisks } from '../../src/host/qemu-orphan-disks.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { readPairDisk } from '../../src/repair/pair-state.ts';
import { snapshotHost, type HostSnapshot } from '../../src/repair/host-snapshot.ts';
import { deletedInstancesWithLiveVolumeBdms, listInstances } from '../../src/db/instances.ts';
import { ensureEncryptionSecret, type VolumeEncryptionSource } from './disks.ts';
import { libvirtFailure } from './libvirt-failures.ts';
import { createStepGuard } from './step-guard.ts';

export function createRepairDiskActivities(deps: { db: Database; libvirt: LibvirtConnection; host: string; volumeEncryption?: VolumeEncryptionSource }) {
  const { db, libvirt, host, volumeEncryption } = deps;
  const guard = createStepGuard({ db, host });
  return {
    /** The volume's disk in the domain (persistent config and live) and the secrets it names that are missing. */
    async inspectPairDisk(input: { instanceUuid: string; volumeId: string }): Promise<NonNullable<PairSnapshot['disk']>> {
      try {
        return await readPairDisk(libvirt, input.instanceUuid, input.volumeId);
      } catch (err) {
        throw libvirtFailure(err, 'RepairFailed');
      }
    },

    /** The disk's libvirt secrets (CHAP/cephx, LUKS passphrase) defined again from the BDM's connection_info and the key store. */
    async defineDiskSecrets(input: { instanceUuid: string; volumeId: string; bdmUuid: string; generation: number }): Promise<{ defined: number }> {
      await guard('defineDiskSecrets', input);
      const connectionInfo = await bdmConnectionInfo(db, input.bdmUuid);
      if (!connectionInfo) throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} has no connection info`, 'RepairFailed');
      try {
        const auth = await ensureAuthSecret(libvirt, input.volumeId, connectionInfo);
        const encryption = await ensureEncryptionSecret({ libvirt, volumeEncryption, host }, input.volumeId, connectionInfo);
        return { defined: (auth ? 1 : 0) + (encryption ? 1 : 0) };
      } catch (err) {
        throw libvirtFailure(err, 'RepairFailed');
      }
    },

    /** Disks QEMU holds that the live XML does not list, removed (src/host/qemu-orphan-disks.ts). */
    async removeQemuOrphanDisks(input: { instanceUuid: string }): Promise<{ removed: string[] }> {
      try {
        const removed = await removeOrphanDisks(libvirt, input.instanceUuid);
        return { removed: removed.map((o) => o.id) };
      } catch (err) {
        throw libvirtFailure(err, 'RepairFailed');
      }
    },
  };
}

/** What the reconciler's check reads of a host's libvirt (src/repair/host-snapshot.ts). */
export function createRepairHostActivities(deps: { db: Database; libvirt: Pick<LibvirtConnection, 'undefineSecret' | 'lookupDomain' | 'getXml' | 'listSecrets'> & Partial<Pick<LibvirtConnection, 'qemuMonitorCommand'>>; host: string }) {
  return {
    /**
     * The domains of this host's instances (persistent and live XML, QEMU's block devices) and the
     * libvirt secrets, read now; also whether the domains of deleted instances last here that still
     * have live volume BDMs are gone.
     */
    async snapshotHostDomains(): Promise<HostSnapshot> {
      try {
        const deleted = await deletedInstancesWithLiveVolumeBdms(deps.db, deps.host);
        return await snapshotHost(deps.libvirt, (await listInstances(deps.db, { host: deps.host })).map((i) => i.uuid), { deleted });
      } catch (err) {
        throw libvirtFailure(err, 'RepairFailed');
      }
    },

    /** On the host's own queue: a volume's secrets that no live BDM of an instance on this host needs, removed. */
    async removeLeakedSecrets(input: { volumeId: string }): Promise<{ removed: boolean; heldBy?: string }> {
      const heldBy = await instanceNeedingVolumeOnHost(deps.db, input.volumeId, deps.host);
      if (heldBy) return { removed: false, heldBy };
      try {
        await deps.libvirt.undefineSecret(authSecretUuid(input.volumeId));
        await deps.libvirt.undefineSecret(encryptionSecretUuid(input.volumeId));
      } catch (err) {
        throw libvirtFailure(err, 'RepairFailed');
      }
      return { removed: true };
    },
  };
}

export type RepairDiskActivities = ReturnType<typeof createRepairDiskActivities>;
export type RepairHostActivities = ReturnType<typeof createRepairHostActivities>;
