/** The DetachVolume workflow's contract (workflows/detach-volume.ts): input, result, `progress` query. */
import { defineQuery } from '@temporalio/workflow';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';

export const DETACH_VOLUME_WORKFLOW = 'detachVolume';

export interface DetachVolumeInput {
  instanceUuid: string;
  volumeId: string;
}

export interface DetachResult {
  instanceUuid: string;
  volumeId: string;
  device: string | null;
  hostDetached: boolean;
}

export interface DetachProgress extends OperationProgress {}

export type DetachVolumeWorkflow = (input: DetachVolumeInput) => Promise<DetachResult>;

export const detachProgressQuery = defineQuery<DetachProgress>(PROGRESS_QUERY);
