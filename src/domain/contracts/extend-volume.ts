/**
 * The ExtendVolume workflow's contract (workflows/extend-volume.ts): grows a volume's disk under the
 * instance's running domain. Two ways in:
 *
 * - tether's own /v3 `os-extend` of an in-use volume (embedded volume service): `newSize` given; the
 *   saga also grows the volume at the block storage (extending → in-use). POST answers once the
 *   `accepted` update says the volume is `extending` (or with the refusal, after the rollback).
 * - `volume-extended` from os-server-external-events (a real Cinder already grew the volume):
 *   `newSize` null; the size is read from the block storage. Started with the `volumeExtended`
 *   signal (signal-with-start): an event that arrives while a run is in flight makes that run resize
 *   once more to whatever size the block storage then reports.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';

export const EXTEND_VOLUME_WORKFLOW = 'extendVolume';

export interface ExtendVolumeInput {
  instanceUuid: string;
  volumeId: string;
  /** GiB to grow the volume to (tether's own block storage API); null: the block storage already grew it. */
  newSize: number | null;
}

export interface ExtendAcceptance {
  instanceUuid: string;
  volumeId: string;
  /** The size the disk is being grown to (GiB). */
  newSize: number;
}

export interface ExtendResult {
  instanceUuid: string;
  volumeId: string;
  /** GiB, as recorded on the BDM (and the embedded volume). */
  size: number;
  /** Whether a running domain's disk was resized (false: the domain is not running; it sees the size at its next start). */
  live: boolean;
  /** The disk's capacity libvirt reports after the resize, in bytes (null when not live). */
  capacity: number | null;
}

export interface ExtendProgress extends OperationProgress {
  accepted: ExtendAcceptance | null;
}

export type ExtendVolumeWorkflow = (input: ExtendVolumeInput) => Promise<ExtendResult>;

export const extendAcceptedUpdate = defineUpdate<ExtendAcceptance>('accepted');
export const volumeExtendedSignal = defineSignal('volumeExtended');
export const extendProgressQuery = defineQuery<ExtendProgress>(PROGRESS_QUERY);
