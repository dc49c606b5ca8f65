/**
 * Nova's checks before an attach changes anything, as one pure function: the validate activity
 * (authoritative, inside the workflow) and the service layer (to answer a plain refusal without
 * starting a workflow run) both use it.
 */
import { TetherError } from '../errors.ts';
import { isValidDevicePath } from './device-names.ts';
import { volumeOperationRefusal } from './instance-states.ts';
import type { BlockDeviceMapping, Instance, Volume } from './types.ts';

export interface AttachAsk {
  device: string | null;
  tag: string | null;
}

export function attachRefusal(instance: Instance, volume: Volume, existingBdm: BlockDeviceMapping | null, ask: AttachAsk): TetherError | null {
  const state = volumeOperationRefusal(instance, 'attach_volume');
  if (state) return new TetherError('InstanceInvalidState', state);
  if (instance.locked) return new TetherError('InstanceLocked', `Instance ${instance.uuid} is locked`);
  if (ask.device !== null && !isValidDevicePath(ask.device)) {
    return new TetherError('InvalidDevicePath', `The supplied device path (${ask.device}) is invalid.`);
  }
  const shelvedOffloaded = instance.vmState === 'shelved_offloaded';
  if (shelvedOffloaded && ask.tag !== null) {
    return new TetherError('TaggedAttachToShelvedNotSupported', 'Tagged volume attachment is not supported for shelved-offloaded instances.');
  }
  if (existingBdm || volume.attachments.some((a) => a.serverId === instance.uuid)) {
    return new TetherError('VolumeAlreadyAttached', `Invalid volume: volume ${volume.id} already attached to instance ${instance.uuid}.`);
  }
  if (shelvedOffloaded && volume.multiattach) {
    return new TetherError('MultiattachToShelvedNotSupported', 'Attaching multiattach volumes is not supported for shelved-offloaded instances.');
  }
  const usable = volume.status === 'available' || (volume.multiattach && volume.status === 'in-use');
  if (!usable) {
    return new TetherError('VolumeNotAvailable', `Invalid volume: volume ${volume.id} status must be available, but current status is: ${volume.status}.`);
  }
  if (volume.availabilityZone !== instance.availabilityZone) {
    return new TetherError(
      'AvailabilityZoneMismatch',
      `Invalid volume: Instance ${instance.uuid} and volume ${volume.id} are not in the same availability_zone. Instance is in ${instance.availabilityZone}. Volume is in ${volume.availabilityZone}.`,
    );
  }
  return null;
}
