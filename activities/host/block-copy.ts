/**
 * The host side of a volume swap (Nova's libvirt driver `swap_volume`): the disk of the running
 * domain is copied to the new volume (virDomainBlockCopy, the destination made by the block storage),
 * QEMU mirrors the guest's writes until the copy is ready, then the disk pivots to the copy
 * (virDomainBlockJobAbort with PIVOT) and the persistent definition follows. Before the pivot a copy
 * can always be dropped (the disk never left the old volume); after it, only the rest of the swap.
 *
 * The disk keeps its `<serial>` (the volume id the guest knows it by): QEMU cannot change a
 * device's serial under a running guest, and a migration keeps the volume's id.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database } from '../../src/db/database.ts';
import { getLiveBdmByUuid } from '../../src/db/block-device-mappings.ts';
import { getVolumeSwap, type VolumeSwap } from '../../src/db/volume-swaps.ts';
import { stripDev } from '../../src/domain/device-names.ts';
import { diskBySerial } from '../../src/host/domain-disks.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { buildDiskXml } from '../../src/libvirt/disk-xml.ts';
import type { FaultPoints } from '../fault-points.ts';
import { businessFailure } from '../failures.ts';
import { diskFacts } from './disk-resize.ts';
import { libvirtFailure } from './libvirt-failures.ts';
import { createStepGuard } from './step-guard.ts';

export interface SwapDiskInput {
  instanceUuid: string;
  /** The volume the disk holds now: its serial, and the pair whose generation guards the step. */
  volumeId: string;
  /** The swap's operation id (its volume_swaps row: the new volume's connection_info). */
  operationId: string;
  generation?: number;
}

export interface SwapDiskState {
  target: string | null;
  /** The live disk's source is the new volume's. */
  pivoted: boolean;
  /** A block job runs on the disk. */
  copying: boolean;
}

/** How often a copy's progress is read while it catches up. */
const POLL_MS = 200;

export function createBlockCopyActivities(deps: { db: Database; libvirt: LibvirtConnection; host: string; faults: FaultPoints }) {
  const { db, libvirt, faults } = deps;
  const guard = createStepGuard({ db, host: deps.host });

  /** The swap's row, the new volume's `<disk>` (same target, bus and serial) and its source path. */
  async function destination(input: SwapDiskInput): Promise<{ swap: VolumeSwap; xml: string; source: string | null }> {
    const swap = await getVolumeSwap(db, input.operationId);
    if (!swap?.connectionInfo) throw ApplicationFailure.nonRetryable(`Swap ${input.operationId} has no connection info for its new volume`, 'SwapFailed');
    const bdm = await getLiveBdmByUuid(db, swap.bdmUuid);
    if (!bdm?.deviceName) throw businessFailure('VolumeNotAttached', `Instance ${input.instanceUuid} is not attached to volume ${input.volumeId}`);
    const xml = buildDiskXml({
      connectionInfo: swap.connectionInfo,
      targetDev: stripDev(bdm.deviceName),
      bus: bdm.diskBus ?? 'scsi',
      deviceType: (bdm.deviceType as 'disk' | 'cdrom' | 'lun' | null) ?? 'disk',
      serial: input.volumeId,
    });
    return { swap, xml, source: diskFacts(xml).source };
  }

  /** The volume's disk in the live domain (by serial); a domain that does not run cannot swap. */
  async function liveDisk(input: SwapDiskInput) {
    const info = await libvirt.lookupDomain(input.instanceUuid);
    if (!info?.active) throw businessFailure('InstanceInvalidState', `The domain of instance ${input.instanceUuid} is not running: its disk cannot be copied live`);
    const disk = diskBySerial(await libvirt.getXml(input.instanceUuid), input.volumeId);
    if (!disk?.target) throw businessFailure('VolumeNotAttached', `Volume ${input.volumeId} has no disk in the running domain of instance ${input.instanceUuid}`);
    return { ...disk, target: disk.target, source: diskFacts(disk.xml).source, mirrorReady: /<mirror\b[^>]*\bready=['"]yes['"]/.test(disk.xml) };
  }

  async function state(input: SwapDiskInput, destinationSource: string | null): Promise<SwapDiskState> {
    const info = await libvirt.lookupDomain(input.instanceUuid);
    if (!info?.active) return { target: null, pivoted: false, copying: false };
    const disk = diskBySerial(await libvirt.getXml(input.instanceUuid), input.volumeId);
    if (!disk?.target) return { target: null, pivoted: false, copying: false };
    const pivoted = destinationSource !== null && diskFacts(disk.xml).source === destinationSource;
    return { target: disk.target, pivoted, copying: (await libvirt.blockJobInfo(input.instanceUuid, disk.target)) !== null };
  }

  return {
    /**
     * Starts the copy of the volume's disk to the new volume (unless one runs, or the disk already
     * pivoted) and waits until it is ready to pivot: everything copied, the guest's writes mirrored.
     */
    async copyDisk(input: SwapDiskInput): Promise<{ target: string; bytes: number }> {
      faults.check('copyDisk', 'before');
      await guard('copyDisk', input);
      const ctx = Context.current();
      try {
        const dest = await destination(input);
        const disk = await liveDisk(input);
        if (disk.source === dest.source) return { target: disk.target, bytes: 0 }; // pivoted by an earlier attempt
        if ((await libvirt.blockJobInfo(input.instanceUuid, disk.target)) === null) {
          await libvirt.blockCopy(input.instanceUuid, disk.target, dest.xml);
        }
        for (;;) {
          const job = await libvirt.blockJobInfo(input.instanceUuid, disk.target);
          if (!job) throw ApplicationFailure.retryable(`The copy of disk ${disk.target} of instance ${input.instanceUuid} ended before it was ready`, 'SwapFailed');
          const now = await liveDisk(input);
          if (now.mirrorReady && job.end > 0 && job.cur === job.end) {
            faults.check('copyDisk', 'after');
            return { target: disk.target, bytes: job.end };
          }
          ctx.heartbeat({ cur: job.cur, end: job.end });
          await sleep(POLL_MS, undefined, { signal: ctx.cancellationSignal });
        }
      } catch (err) {
        throw libvirtFailure(err, 'SwapFailed');
      }
    },

    /** Switches the disk to the copy (the point of no return); a disk that pivoted already is left as it is. */
    async pivotDisk(input: SwapDiskInput): Promise<{ target: string }> {
      faults.check('pivotDisk', 'before');
      await guard('pivotDisk', input);
      try {
        const dest = await destination(input);
        const disk = await liveDisk(input);
        if (disk.source !== dest.source) {
          if ((await libvirt.blockJobInfo(input.instanceUuid, disk.target)) === null) {
            throw ApplicationFailure.nonRetryable(`Disk ${disk.target} of instance ${input.instanceUuid} has no copy to pivot to`, 'SwapFailed');
          }
          await libvirt.blockJobAbort(input.instanceUuid, disk.target, { pivot: true });
          const after = await liveDisk(input);
          if (after.source !== dest.source) throw ApplicationFailure.retryable(`Disk ${disk.target} still reads ${after.source} after the pivot`, 'SwapFailed');
        }
        faults.check('pivotDisk', 'after');
        return { target: disk.target };
      } catch (err) {
        throw libvirtFailure(err, 'SwapFailed');
      }
    },

    /** Where the disk is: pivoted to the new volume or not, a copy running or not (after a pivot whose answer was lost). */
    async inspectSwapDisk(input: SwapDiskInput): Promise<SwapDiskState> {
      try {
        return await state(input, (await destination(input)).source);
      } catch (err) {
        throw libvirtFailure(err, 'SwapFailed');
      }
    },

    /**
     * Compensation: drops the copy (the disk stays on the old volume). Not bound to the generation:
     * dropping a copy never changes what the guest reads. A disk found pivoted cannot be taken back.
     */
    async abortDiskCopy(input: SwapDiskInput): Promise<{ aborted: boolean }> {
      await guard('abortDiskCopy', { instanceUuid: input.instanceUuid, volumeId: input.volumeId });
      try {
        const swap = await getVolumeSwap(db, input.operationId);
        const source = swap?.connectionInfo ? (await destination(input).catch(() => null))?.source ?? null : null;
        const now = await state(input, source);
        if (now.pivoted) throw ApplicationFailure.nonRetryable(`Disk ${now.target} of instance ${input.instanceUuid} already pivoted to the new volume: the swap can only go forward`, 'SwapFailed');
        if (!now.copying || !now.target) return { aborted: false };
        await libvirt.blockJobAbort(input.instanceUuid, now.target, { pivot: false });
        return { aborted: true };
      } catch (err) {
        throw libvirtFailure(err, 'SwapFailed');
      }
    },

    /** After the pivot: the persistent definition's disk reads the new volume too (a restart keeps the swap). */
    async updatePersistentDisk(input: SwapDiskInput): Promise<{ updated: boolean }> {
      faults.check('updatePersistentDisk', 'before');
      await guard('updatePersistentDisk', input);
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info?.persistent) return { updated: false };
        const dest = await destination(input);
        const disk = diskBySerial(await libvirt.getXml(input.instanceUuid, { inactive: true }), input.volumeId);
        if (!disk || diskFacts(disk.xml).source === dest.source) return { updated: false };
        await libvirt.updateDevice(input.instanceUuid, dest.xml, { config: true, live: false });
        const after = diskBySerial(await libvirt.getXml(input.instanceUuid, { inactive: true }), input.volumeId);
        if (!after || diskFacts(after.xml).source !== dest.source) throw ApplicationFailure.retryable(`The persistent disk of volume ${input.volumeId} still reads its old source`, 'SwapFailed');
        return { updated: true };
      } catch (err) {
        throw libvirtFailure(err, 'SwapFailed');
      }
    },
  };
}

export type BlockCopyActivities = ReturnType<typeof createBlockCopyActivities>;
