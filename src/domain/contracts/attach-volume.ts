/**
 * The AttachVolume workflow's contract (workflows/attach-volume.ts): its input and result, the
 * `reservation` update that answers once the device name and the volume are reserved (Nova's POST),
 * and the `progress` query. Used by the workflow and by the service that starts it.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { AttachRequest } from '../types.ts';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';

export const ATTACH_VOLUME_WORKFLOW = 'attachVolume';

export interface AttachVolumeInput extends AttachRequest {}

export interface AttachReservation {
  bdmUuid: string;
  device: string | null;
  attachmentId: string;
  instanceUuid: string;
  volumeId: string;
  tag: string | null;
  deleteOnTermination: boolean;
}

export interface AttachResult extends AttachReservation {
  /** False for a shelved-offloaded instance: the BDM waits for unshelve, nothing was asked of a host. */
  hostAttached: boolean;
}

export interface AttachProgress extends OperationProgress {
  reservation: AttachReservation | null;
}

/** The workflow's signature, for typed clients (the service) that must not import workflow code. */
export type AttachVolumeWorkflow = (input: AttachVolumeInput) => Promise<AttachResult>;

export const reservationUpdate = defineUpdate<AttachReservation>('reservation');
export const attachProgressQuery = defineQuery<AttachProgress>(PROGRESS_QUERY);
