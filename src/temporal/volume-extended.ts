/**
 * A `volume-extended` event for one server (Nova's os-server-external-events, and what the embedded
 * volume service tells the other servers of a multiattach volume it grew): signal-with-start of the
 * ExtendVolume workflow of (server, volume). A run in flight takes the signal and resizes once more;
 * otherwise a new run reads the volume's size from the block storage and grows the disk to it.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { EXTEND_VOLUME_WORKFLOW, volumeExtendedSignal, type ExtendVolumeWorkflow } from '../domain/contracts/extend-volume.ts';
import { extendWorkflowId } from '../domain/steps.ts';
import { ComputeHost, InstanceUuid, TetherState, VolumeId } from './search-attributes.ts';

export function signalVolumeExtended(
  client: Client,
  taskQueue: string,
  target: { instanceUuid: string; volumeId: string; host: string | null },
  /** The memo (who asked, under which request id) and the summary the Temporal UI shows; a plain summary when absent. */
  start: { memo?: Record<string, unknown>; staticSummary?: string; staticDetails?: string } = {},
): Promise<WorkflowHandle<ExtendVolumeWorkflow>> {
  return client.workflow.signalWithStart<ExtendVolumeWorkflow, []>(EXTEND_VOLUME_WORKFLOW, {
    workflowId: extendWorkflowId(target.instanceUuid, target.volumeId),
    taskQueue,
    args: [{ instanceUuid: target.instanceUuid, volumeId: target.volumeId, newSize: null }],
    signal: volumeExtendedSignal,
    signalArgs: [],
    staticSummary: `extend volume ${target.volumeId} on server ${target.instanceUuid} (volume-extended)`,
    ...start,
    typedSearchAttributes: [
      { key: InstanceUuid, value: target.instanceUuid },
      { key: VolumeId, value: target.volumeId },
      { key: ComputeHost, value: target.host ?? '' },
      { key: TetherState, value: 'extending' },
    ],
  });
}
