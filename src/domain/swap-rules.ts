/**
 * The checks before a swap changes anything (Nova's swap_volume, under its current rule: only while
 * the block storage migrates the old volume), and what tether's swap does not do, as one pure
 * function: the service layer answers a plain refusal without starting a workflow, and the swap's
 * validate step (authoritative) says the same.
 */
import { TetherError } from '../errors.ts';
import type { BlockDeviceMapping, Instance, Volume } from './types.ts';

/** Nova's check_instance_state for swap_volume. */
export const SWAP_VM_STATES: readonly string[] = ['active', 'paused', 'resized'];

export function swapRefusal(instance: Instance, bdm: BlockDeviceMapping | null, oldVolume: Volume, newVolume: Volume): TetherError | null {
  if (oldVolume.migrationStatus !== 'migrating') {
    return new TetherError('VolumeNotMigrating', `volume ${oldVolume.id} is not migrating; this API should only be called by Cinder`);
  }
  if (instance.locked) return new TetherError('InstanceLocked', `Instance ${instance.uuid} is locked`);
  if (!SWAP_VM_STATES.includes(instance.vmState) || instance.taskState !== null || !instance.host) {
    const why = instance.taskState !== null ? `task_state ${instance.taskState}` : `vm_state ${instance.vmState}`;
    return new TetherError('InstanceInvalidState', `Cannot 'swap_volume' instance ${instance.uuid} while it is in ${why}`);
  }
  if (!bdm || bdm.attachStatus !== 'attached') return new TetherError('VolumeNotAttached', `No volume Block Device Mapping with id ${oldVolume.id}.`);
  if (newVolume.id === oldVolume.id) return new TetherError('InvalidInput', `Volume ${oldVolume.id} cannot be swapped for itself.`);
  if (newVolume.status !== 'available') {
    return new TetherError('VolumeNotAvailable', `Invalid volume: volume ${newVolume.id} status must be available, but current status is: ${newVolume.status}.`);
  }
  if (newVolume.migrationStatus !== `target:${oldVolume.id}`) {
    return new TetherError('InvalidInput', `Volume ${newVolume.id} is not the destination of the migration of volume ${oldVolume.id} (its migration_status is ${newVolume.migrationStatus ?? 'none'}).`);
  }
  if (oldVolume.encrypted || newVolume.encrypted) {
    return new TetherError('SwapNotSupported', 'Swap volume is not supported for encrypted volumes (QEMU decrypts them: a block copy would need both keys).');
  }
  if (oldVolume.multiattach || newVolume.multiattach) {
    return new TetherError('SwapNotSupported', 'Swapping multi-attach volumes is not supported.');
  }
  if (newVolume.size !== oldVolume.size) {
    return new TetherError('SwapNotSupported', `The new volume ${newVolume.id} must have the size of volume ${oldVolume.id} (${oldVolume.size} GiB), not ${newVolume.size} GiB: QEMU copies between disks of one size.`);
  }
  return null;
}
