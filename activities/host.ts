/**
 * Activities that run on a compute host, inside its compute agent, by job:
 *
 * - `host/device-names.ts`: the BDM with a reserved device name, the name given at unshelve, the host
 *   connector (touches the database and reads the domain);
 * - `host/disks.ts`: hot-plug and unplug of a volume's disk, its libvirt secrets, QEMU's orphan disks;
 * - `host/disk-resize.ts`: growing a volume's disk under the running domain (extend);
 * - `host/power.ts`: a server's power: start, stop, reboot (os-start, os-stop, reboot);
 * - `host/domains.ts`: the life of domains (the `host-<name>` queue).
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

export { createDomainActivities, type DomainActivities } from './host/domains.ts';
export type { ReserveDeviceInput, ReservedDevice } from './host/device-names.ts';
export type { DetachDiskOptions, VolumeEncryptionSource } from './host/disks.ts';
export { createRepairHostActivities, type RepairHostActivities } from './host/repair-disks.ts';

/** The activities of the instance queues: device names, disks and their sizes, the server's power, the repair steps. */
export function createHostActivities(deps: Parameters<typeof createDiskActivities>[0] & Pick<PowerDeps, 'cleanShutdownSeconds'>) {
  return { ...createDeviceNameActivities(deps), ...createDiskActivities(deps), ...createDiskResizeActivities(deps), ...createPowerActivities(deps), ...createRepairDiskActivities(deps) };
}

export type HostActivities = ReturnType<typeof createHostActivities>;
