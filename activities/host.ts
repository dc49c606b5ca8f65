/**
 * Activities that run on a compute host, inside its compute agent, by job:
 *
 * - `host/device-names.ts`: the BDM with a reserved device name, the name given at unshelve, the host
 *   connector (touches the database and reads the domain);
 * - `host/disks.ts`: hot-plug and unplug of a volume's disk, its libvirt secrets, QEMU's orphan disks;
 * - `host/disk-resize.ts`: growing a volume's disk under the running domain (extend);
 * - `host/power.ts`: a server's power: start, stop, reboot (os-start, os-stop, reboot);
 * - `host/block-copy.ts`: a volume's disk copied to another volume and pivoted (swap);
 * - `host/domains.ts`: the life of domains (the `host-<name>` queue);
 * - `host/domain-inspection.ts`: a domain tether does not know yet, for an import (same queue).
 *
 * Volume steps run on the instance's own task queue `instance-<uuid>` with one activity at a time,
 * which serializes them per instance the way Nova's `synchronized(instance.uuid)` does. The
 * activity names are part of recorded histories: they never change.
 */
import { createDeviceNameActivities } from './host/device-names.ts';
import { createDiskActivities } from './host/disks.ts';
import { createDiskResizeActivities } from './host/disk-resize.ts';
import { createPowerActivities, type PowerDeps } from './host/power.ts';
import { createRepairDiskActivities } from './host/repair-disks.ts';
import { createBlockCopyActivities } from './host/block-copy.ts';

import { createDomainActivities as createDomainLifeActivities } from './host/domains.ts';
import { createDomainInspectionActivities } from './host/domain-inspection.ts';

export type { InspectedDomain, InspectedDisk } from './host/domain-inspection.ts';

/** The activities of a host's queue `host-<name>`: the life of its domains, and what it tells about a domain tether does not know yet. */
export function createDomainActivities(deps: Parameters<typeof createDomainLifeActivities>[0]) {
  return { ...createDomainLifeActivities(deps), ...createDomainInspectionActivities(deps) };
}

export type DomainActivities = ReturnType<typeof createDomainActivities>;
export type { ReserveDeviceInput, ReservedDevice } from './host/device-names.ts';
export type { DetachDiskOptions, VolumeEncryptionSource } from './host/disks.ts';
export type { SwapDiskInput, SwapDiskState } from './host/block-copy.ts';
export { createRepairHostActivities, type RepairHostActivities } from './host/repair-disks.ts';

/** The activities of the instance queues: device names, disks and their sizes, the server's power, the repair steps. */
export function createHostActivities(deps: Parameters<typeof createDiskActivities>[0] & Pick<PowerDeps, 'cleanShutdownSeconds'>) {
  return { ...createDeviceNameActivities(deps), ...createDiskActivities(deps), ...createDiskResizeActivities(deps), ...createPowerActivities(deps), ...createBlockCopyActivities(deps), ...createRepairDiskActivities(deps) };
}

export type HostActivities = ReturnType<typeof createHostActivities>;
