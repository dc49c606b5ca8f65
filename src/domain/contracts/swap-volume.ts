/**
 * The SwapVolume workflow's contract (workflows/swap-volume.ts): an attached volume's disk moves to
 * another volume under the running guest (Nova's swap_volume, which Cinder calls while it migrates
 * the volume: PUT os-volume_attachments with the new volumeId). It runs on the instance's queue, as
 * attaches and detaches do, under the id `swap-<instance>-<old volume>`.
 */
import { defineQuery } from '@temporalio/workflow';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';

export const SWAP_VOLUME_WORKFLOW = 'swapVolume';

export interface SwapVolumeInput {
  instanceUuid: string;
  /** The volume attached now (the disk's serial). */
  oldVolumeId: string;
  /** The volume its data moves to (Cinder's migration destination). */
  newVolumeId: string;
}

export interface SwapResult {
  instanceUuid: string;
  oldVolumeId: string;
  newVolumeId: string;
  /** The volume id the attachment keeps (the block storage's save_volume_id: the old id after a migration). */
  volumeId: string;
  /** The attachment the BDM now records (made on the new volume). */
  attachmentId: string;
  /** The disk's target in the domain (unchanged by the swap). */
  target: string;
}

export interface SwapProgress extends OperationProgress {}

export type SwapVolumeWorkflow = (input: SwapVolumeInput) => Promise<SwapResult>;

export const swapProgressQuery = defineQuery<SwapProgress>(PROGRESS_QUERY);

export function swapWorkflowId(instanceUuid: string, oldVolumeId: string): string {
  return `swap-${instanceUuid}-${oldVolumeId}`;
}

/** The swap's steps, in order, with the words the CLI prints for them. */
export const SWAP_STEPS = {
  awaitEarlierOperation: 'Wait for an earlier attach, detach or extend of the same volume and server',
  validateSwap: 'Validate the request (instance state, old volume attached and migrating, new volume available and alike)',
  takeGeneration: "Take the operation generation of the server with both volumes (older operations' host steps are refused from here on)",
  reserveNewVolume: 'Reserve the new volume (create its block-storage attachment)',
  getHostConnector: 'Get the host connector',
  initializeConnection: 'Initialize the connection of the new volume (export it to the host)',
  copyDisk: 'Copy the disk to the new volume (virDomainBlockCopy) until the copy mirrors the guest',
  pivotDisk: 'Pivot the disk to the new volume (virDomainBlockJobAbort PIVOT): from here on the swap only moves forward',
  recordPivot: 'Record that the disk pivoted',
  updatePersistentDisk: "Point the domain's persistent disk at the new volume",
  completeNewAttachment: 'Complete the new attachment',
  releaseOldAttachment: "Delete the old volume's attachment",
  completeMigration: "Tell the block storage the swap is done (Cinder's os-migrate_volume_completion)",
  recordSwapOnBdm: 'Record the new attachment and connection info on the block device mapping',
} as const;

export const SWAP_COMPENSATIONS = {
  abandonSwap: "Release the new volume (delete its attachment) and end the block storage's migration with an error",
  abortDiskCopy: 'Drop the copy (the disk stays on the old volume)',
} as const;
