/**
 * Growing a volume's disk under a running domain (Nova's libvirt driver `extend_volume`): QEMU resizes
 * the image and tells the guest (virDomainBlockResize), and the capacity libvirt then reports
 * (virDomainGetBlockInfo) confirms it. A domain that does not run has nothing to resize: it opens the
 * grown image at its next start.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { diskBySerial } from '../../src/host/domain-disks.ts';
import type { Database } from '../../src/db/database.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import type { FaultPoints } from '../fault-points.ts';
import { businessFailure } from '../failures.ts';
import { libvirtFailure } from './libvirt-failures.ts';
import { createStepGuard } from './step-guard.ts';

const run = promisify(execFile);
const GiB = 1024 ** 3;

export interface ResizeDiskInput {
  instanceUuid: string;
  volumeId: string;
  /** The volume's new size (GiB): the whole device, as the block storage counts it. */
  sizeGb: number;
  /** The extend's generation on the pair: refused once a newer operation owns it (activities/host/step-guard.ts). */
  generation?: number;
}

export interface ResizedDisk {
  /** False when the domain is not running (or the disk is not in its live XML): nothing to resize. */
  live: boolean;
  target: string | null;
  /** Bytes the guest now sees (null when not live). */
  capacity: number | null;
}

/** The parts of a `<disk>` element the size depends on. */
export function diskFacts(diskXml: string): { format: string | null; luks: boolean; source: string | null; network: boolean } {
  return {
    format: /<driver\b[^>]*\btype=['"]([^'"]+)['"]/.exec(diskXml)?.[1] ?? null,
    luks: /<encryption\b[^>]*\bformat=['"]luks['"]/.test(diskXml),
    source: /<source\b[^>]*\b(?:file|dev)=['"]([^'"]+)['"]/.exec(diskXml)?.[1] ?? null,
    network: /<disk\b[^>]*\btype=['"]network['"]/.test(diskXml),
  };
}

/**
 * The size to ask QEMU for. A raw device holding LUKS (Cinder's encrypted volumes: the header is
 * inside the device the block storage grew to `bytes`) exposes its payload to the guest: QEMU must
 * be given the device size minus the LUKS payload offset, or it would try to grow the device past its
 * end (Nova's `_resize_attached_encrypted_volume` does the same). A qcow2 with LUKS inside (the
 * embedded service's encrypted volumes) keeps its header in its own clusters: its virtual size is
 * the payload, so it is given the size as it is.
 */
export async function requestedBytes(diskXml: string, bytes: number, volumeId: string): Promise<number> {
  const disk = diskFacts(diskXml);
  if (!disk.luks || disk.format !== 'raw') return bytes;
  if (disk.network || !disk.source) {
    throw businessFailure('ExtendFailed', `Volume ${volumeId} is a LUKS network disk: its payload offset cannot be read on this host, so it cannot be resized live.`);
  }
  // -U: QEMU holds the device; the LUKS header is read without the key (no I/O to the payload)
  const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', disk.source]);
  const offset = (JSON.parse(stdout) as { 'format-specific'?: { data?: { 'payload-offset'?: number } } })['format-specific']?.data?.['payload-offset'];
  if (typeof offset !== 'number') throw businessFailure('ExtendFailed', `Volume ${volumeId}: qemu-img finds no LUKS payload offset in ${disk.source}.`);
  return bytes - offset;
}

export function createDiskResizeActivities(deps: { db: Database; libvirt: LibvirtConnection; host: string; faults: FaultPoints }) {
  const { libvirt, faults } = deps;
  const guard = createStepGuard({ db: deps.db, host: deps.host });
  return {
    /**
     * Grows the volume's disk (found by serial) in the running domain to the volume's new size and
     * confirms the capacity. Never shrinks: a disk already at least that large (a retry) is left as
     * it is. Not running, or no such disk live: nothing to do (live: false).
     */
    async resizeDisk(input: ResizeDiskInput): Promise<ResizedDisk> {
      faults.check('resizeDisk', 'before');
      await guard('resizeDisk', input);
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info?.active) return { live: false, target: null, capacity: null };
        const disk = diskBySerial(await libvirt.getXml(input.instanceUuid), input.volumeId);
        if (!disk?.target) return { live: false, target: null, capacity: null };
        const bytes = await requestedBytes(disk.xml, input.sizeGb * GiB, input.volumeId);
        const before = await libvirt.blockInfo(input.instanceUuid, disk.target);
        if (before.capacity < bytes) await libvirt.blockResize(input.instanceUuid, disk.target, bytes);
        const after = await libvirt.blockInfo(input.instanceUuid, disk.target);
        if (after.capacity < bytes) {
          throw ApplicationFailure.retryable(`Disk ${disk.target} of volume ${input.volumeId} reports ${after.capacity} bytes after the resize to ${bytes}`, 'ExtendUnconfirmed');
        }
        faults.check('resizeDisk', 'after');
        return { live: true, target: disk.target, capacity: after.capacity };
      } catch (err) {
        throw libvirtFailure(err, 'ExtendFailed');
      }
    },
  };
}

export type DiskResizeActivities = ReturnType<typeof createDiskResizeActivities>;
