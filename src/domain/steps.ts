/** The steps of the sagas, in order, with the words the CLI prints for them. Safe to import from workflows. */
export const ATTACH_STEPS = {
  awaitEarlierOperation: 'Wait for an earlier detach of the same volume and server',
  validate: 'Validate the request (instance state, device path, volume, availability zone)',
  takeGeneration: 'Take the operation generation of the volume and server (older operations\' host steps are refused from here on)',
  reserveDeviceName: 'Create the block device mapping with a reserved device name',
  createShelvedBdm: 'Create the block device mapping (shelved-offloaded: device chosen at unshelve)',
  reserveVolume: 'Reserve the volume (create the block-storage attachment)',
  getHostConnector: 'Get the host connector',
  initializeConnection: 'Initialize the connection (export the volume to the host)',
  attachDisk: 'Attach the disk to the libvirt domain',
  completeAttachment: 'Save connection info and complete the attachment',
} as const;

export type AttachStep = keyof typeof ATTACH_STEPS;

export const DETACH_STEPS = {
  awaitEarlierOperation: 'Wait for an earlier attach of the same volume and server',
  validateDetach: 'Validate the request (instance state, volume attached, not the root device)',
  takeGeneration: 'Take the operation generation of the volume and server (older operations\' host steps are refused from here on)',
  beginDetaching: 'Begin detaching at the block storage',
  detachDisk: 'Detach the disk from the libvirt domain and confirm it left',
  deleteAttachment: 'Delete the block-storage attachment (terminate the connection)',
  destroyBdm: 'Destroy the block device mapping',
} as const;

export const FORCE_DETACH_STEPS = {
  validateForceDetach: 'Validate the request (volume attached or being attached, not the root device; the host and its state)',
  takeGeneration: ATTACH_STEPS.takeGeneration,
  supersedeOperations: 'Stop the attach of the same volume and server still running (its host steps are refused from now on)',
  beginDetaching: 'Begin detaching at the block storage',
  detachDisk: 'Detach the disk on the host, if the host answers in time',
  destroyBdm: 'Destroy the block device mapping',
  fenceHost: 'Fence the host: its agent removes the disk and cleans up before it serves again',
  deleteAttachment: 'Delete the block-storage attachment (only once the host is disconnected or fenced)',
} as const;

export const EXTEND_STEPS = {
  awaitEarlierOperation: 'Wait for an earlier attach or detach of the same volume and server',
  validateExtend: 'Validate the request (volume attached to the server, new size larger than the volume)',
  takeGeneration: ATTACH_STEPS.takeGeneration,
  beginExtending: 'Begin extending at the block storage (volume: extending)',
  growVolume: "Grow the volume's file where no running QEMU holds it (qemu-img resize)",
  resizeDisk: 'Resize the disk under the running domain (virDomainBlockResize) and confirm its capacity',
  finishExtending: 'Record the new size at the block storage (volume: in-use)',
  recordVolumeSize: 'Record the new size on the block device mapping',
  notifyAttachedInstances: 'Tell the other servers of the multiattach volume (volume-extended)',
} as const;

export type ExtendStep = keyof typeof EXTEND_STEPS;

export const COMPENSATION_STEPS = {
  rollExtending: 'Roll the volume back to in-use with the size it had',
  rollDetaching: 'Roll the volume back to in-use and keep the block device mapping',
  reattachDisk: 'Put the disk back in the domain (persistent and live)',
  detachDisk: 'Detach the disk from the libvirt domain',
  deleteAttachment: 'Delete the block-storage attachment (terminate connection, unreserve)',
  destroyBdm: 'Destroy the block device mapping',
} as const;

export type StepStatus = 'running' | 'completed' | 'failed' | 'compensated' | 'skipped';

export interface StepProgress {
  step: string;
  description: string;
  status: StepStatus;
  startedAt: string;
  endedAt?: string;
  error?: string;
}

/** Values of the TetherState search attribute. */
export type OperationState = 'attaching' | 'attached' | 'rolled-back' | 'detaching' | 'detached' | 'extending' | 'extended' | 'failed'
  | 'repairing' | 'repaired' | 'swapping' | 'swapped' | 'importing' | 'imported';

export function attachWorkflowId(instanceUuid: string, volumeId: string): string {
  return `attach-${instanceUuid}-${volumeId}`;
}

export function detachWorkflowId(instanceUuid: string, volumeId: string): string {
  return `detach-${instanceUuid}-${volumeId}`;
}

export function extendWorkflowId(instanceUuid: string, volumeId: string): string {
  return `extend-${instanceUuid}-${volumeId}`;
}
