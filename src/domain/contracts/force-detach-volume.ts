/**
 * The ForceDetachVolume workflow's contract (workflows/force-detach-volume.ts): a detach from a host
 * that may be gone (Nova bug 1909120), safe against CVE-2023-2088: the block-storage attachment is
 * released only once the host has disconnected the disk, or once the host is fenced (its agent
 * removes the disk and cleans up before it serves anything again). It runs under the detach's
 * workflow id, so an attach of the same pair asked later waits for it.
 */
import { defineQuery } from '@temporalio/workflow';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';

export const FORCE_DETACH_VOLUME_WORKFLOW = 'forceDetachVolume';

export interface ForceDetachVolumeInput {
  instanceUuid: string;
  volumeId: string;
  /** How long to wait for the host to detach the disk itself before fencing it; 0: fence at once (the host is forced down). */
  hostWaitSeconds: number;
  /** Why (recorded on the fence): who asked, and the host's state then. */
  reason: string;
}

export interface ForceDetachResult {
  instanceUuid: string;
  volumeId: string;
  device: string | null;
  host: string;
  /** The host's agent detached the disk itself. */
  hostDetached: boolean;
  /** The host was fenced (its agent cleans up when it comes back); the fence's epoch. */
  fenceEpoch: number | null;
  /** Workflows of the same pair that were still running and were stopped. */
  superseded: string[];
}

export interface ForceDetachProgress extends OperationProgress {}

export type ForceDetachVolumeWorkflow = (input: ForceDetachVolumeInput) => Promise<ForceDetachResult>;

export const forceDetachProgressQuery = defineQuery<ForceDetachProgress>(PROGRESS_QUERY);
