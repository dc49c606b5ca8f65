/**
 * Workflow interceptor module: every activity a workflow schedules (regular or local) gets a
 * one-line summary, so the Temporal UI's timeline reads as the saga's steps ("Attach the disk to the
 * libvirt domain") rather than bare activity names. The summary is user metadata on the schedule
 * command: it is not part of what replay compares, so recorded histories replay unchanged
 * (test/replay.test.ts bundles this module as the workers do). Bundled by
 * src/temporal/workflow-interceptor-modules.ts.
 */
import type { ActivityInput, LocalActivityInput, Next, WorkflowInterceptorsFactory, WorkflowOutboundCallsInterceptor } from '@temporalio/workflow';
import type { DatabaseActivities } from '../activities/database.ts';
import type { VolumeServiceActivities } from '../activities/volume-service.ts';
import type { OperationActivities } from '../activities/operations.ts';
import type { DomainActivities, HostActivities, RepairHostActivities } from '../activities/host.ts';
import type { RepairActivities } from '../activities/repair.ts';
import type { ReconcileActivities } from '../activities/reconcile.ts';
import type { VolumeSwapActivities } from '../activities/volume-swap.ts';
import type { ServerImportActivities } from '../activities/server-import.ts';

type ActivityName = keyof (DatabaseActivities & VolumeServiceActivities & OperationActivities & HostActivities & DomainActivities
  & RepairActivities & RepairHostActivities & ReconcileActivities & VolumeSwapActivities & ServerImportActivities);

/** One line per activity, in the words of the saga's steps (src/domain/steps.ts). */
export const ACTIVITY_SUMMARIES: Record<ActivityName, string> = {
  // ordering
  isEarlierOperationRunning: 'Look for an earlier attach or detach of the same volume and server',
  awaitEarlierOperation: 'Wait for the earlier attach or detach of the same volume and server',
  awaitInstanceOperations: "Wait for the server's attaches and detaches in flight",
  terminatePairOperations: 'Stop the attach of the same volume and server still running',
  notifyAttachedInstances: 'Tell the other servers of the multiattach volume that it grew',
  // database
  validateAttach: 'Validate the attach (server state, device, volume, availability zone)',
  validateDetach: 'Validate the detach (server state, volume attached, not the root device)',
  validateExtend: 'Validate the extend (volume attached, new size larger)',
  validateForceDetach: 'Validate the force detach (volume attached, host state)',
  takeGeneration: 'Take the operation generation of the volume and server',
  createShelvedBdm: 'Create the block device mapping of a shelved-offloaded server',
  setBdmAttachStatus: "Set the block device mapping's attach status",
  markBdmAttached: 'Mark the block device mapping attached',
  destroyBdm: 'Destroy the block device mapping',
  recordVolumeSize: 'Record the new size on the block device mapping',
  volumeBdmsOf: "Read the server's volume block device mappings",
  fenceHost: 'Fence the host (its agent cleans up before it serves again)',
  beginInstanceTask: "Take the server's task state",
  finishInstanceTask: "Give the server's task state back with its new state",
  setInstanceHost: "Record the server's compute host",
  markInstanceDeleted: 'Mark the server deleted',
  markInstanceActive: 'Mark the server active',
  markInstanceError: 'Mark the server in error',
  // block storage
  reserveVolume: 'Reserve the volume (create the block-storage attachment)',
  initializeConnection: 'Initialize the connection (export the volume to the host)',
  completeAttachment: 'Complete the block-storage attachment',
  reReserveAttachment: "Keep the volume reserved without the host's connection",
  beginDetaching: 'Begin detaching at the block storage',
  beginForceDetaching: 'Begin force detaching at the block storage',
  rollDetaching: 'Roll the volume back to in-use',
  deleteAttachment: 'Delete the block-storage attachment (terminate the connection)',
  deleteVolume: 'Delete the volume (delete_on_termination)',
  beginExtending: 'Begin extending at the block storage',
  growVolume: "Grow the volume's file",
  finishExtending: 'Record the new size at the block storage',
  rollExtending: 'Roll the volume back to in-use with the size it had',
  // compute host
  reserveDeviceName: 'Create the block device mapping with a reserved device name',
  assignDeviceName: 'Give the block device mapping a device name on the host',
  getHostConnector: 'Get the host connector',
  attachDisk: 'Attach the disk to the libvirt domain',
  detachDisk: 'Detach the disk from the libvirt domain and confirm it left',
  resizeDisk: 'Resize the disk under the running domain',
  spawnDomain: 'Define and start the libvirt domain',
  stopDomain: 'Stop the libvirt domain',
  exportDomain: "Read the libvirt domain's definition",
  importDomain: 'Define the libvirt domain on this host',
  destroyDomain: 'Destroy and undefine the libvirt domain',
  powerOnDomain: 'Start the libvirt domain',
  powerOffDomain: 'Ask the guest to power off, then power the domain off',
  rebootDomain: 'Reboot the libvirt domain (soft: a clean shutdown and a start; hard: power off and start)',
  // repair (workflows/repair-volume.ts)
  pairOperationsRunning: 'Look for an attach, detach or extend of the volume and server running now',
  awaitPairOperations: 'Wait until no attach, detach or extend of the volume and server runs',
  observeGeneration: 'Read the operation generation of the volume and server as it is',
  readPairStores: 'Read the block device mapping, the volume and its attachment',
  inspectPairDisk: "Read the domain's disk of the volume and the secrets it names",
  recreateBdm: 'Recreate the block device mapping of the disk in the domain',
  ensureAttachment: 'Find or make the block-storage attachment of the volume and server',
  connectAttachment: 'Update the attachment with the host connector and record the connection on the BDM',
  completeRepairAttachment: 'Complete the attachment and mark the block device mapping attached',
  reserveRepairAttachment: 'Reserve an attachment for the shelved-offloaded server',
  deleteAttachmentUnless: 'Delete the attachment this repair made',
  setRepairDeviceName: "Set the block device mapping's device name to the disk's target",
  deleteRepairAttachment: 'Delete the block-storage attachment nobody has',
  retireBdm: 'Retire the block device mapping',
  retireRecreatedBdm: 'Retire the block device mapping this repair recreated',
  syncVolumeStatus: "Set the volume's status to what its attachments say",
  defineDiskSecrets: "Define the disk's libvirt secrets again",
  removeQemuOrphanDisks: 'Remove the disks QEMU holds that libvirt lost track of',
  removeLeakedSecrets: "Remove the volume's leaked libvirt secrets on the host",
  snapshotHostDomains: "Read the host's domains and libvirt secrets for the reconciler",
  // the reconciler (workflows/repair-reconcile.ts)
  reconcileHosts: 'Choose the compute hosts to check',
  checkHostSnapshot: "Run the invariant checker on the host's snapshot",
  persistentFindings: 'Record the findings and keep those the run before saw too',
  reportReconcile: 'Count and notify what the reconciler found and did',
  // swap (workflows/swap-volume.ts)
  validateSwap: 'Validate the swap (server state, old volume attached and migrating, new volume available and alike)',
  reserveSwapVolume: 'Reserve the new volume (create its block-storage attachment)',
  initializeSwapConnection: 'Initialize the connection of the new volume (export it to the host)',
  recordSwapPivot: 'Record that the disk pivoted to the new volume',
  completeVolumeMigration: "End the block storage's migration (os-migrate_volume_completion)",
  recordSwapOnBdm: 'Record the new attachment and connection info on the block device mapping',
  abandonSwap: 'Release the new volume and end the migration with an error',
  copyDisk: 'Copy the disk to the new volume until the copy mirrors the guest',
  pivotDisk: 'Pivot the disk to the new volume',
  inspectSwapDisk: 'Look whether the disk pivoted to the new volume',
  abortDiskCopy: 'Drop the copy (the disk stays on the old volume)',
  updatePersistentDisk: "Point the domain's persistent disk at the new volume",
  // import (workflows/import-server.ts)
  inspectDomain: 'Read the libvirt domain and its disks',
  listHostDomains: "List the host's libvirt domains",
  planServerImport: "Match the domain's disks to volumes of the block storage",
  registerImportedInstance: 'Register the imported server',
  forgetImportedInstance: 'Remove the imported server row',
  adoptVolume: "Record the volume's attachment and block device mapping as the disk is",
  releaseAdoptedVolume: "Remove the volume's block device mapping and attachment",
};

function summaryOf(activityType: string): string | undefined {
  return (ACTIVITY_SUMMARIES as Record<string, string>)[activityType];
}

class ActivitySummaries implements WorkflowOutboundCallsInterceptor {
  scheduleActivity(input: ActivityInput, next: Next<WorkflowOutboundCallsInterceptor, 'scheduleActivity'>) {
    const summary = input.options.summary ?? summaryOf(input.activityType);
    return next(summary === undefined ? input : { ...input, options: { ...input.options, summary } });
  }

  scheduleLocalActivity(input: LocalActivityInput, next: Next<WorkflowOutboundCallsInterceptor, 'scheduleLocalActivity'>) {
    const summary = input.options.summary ?? summaryOf(input.activityType);
    return next(summary === undefined ? input : { ...input, options: { ...input.options, summary } });
  }
}

export const interceptors: WorkflowInterceptorsFactory = () => ({ outbound: [new ActivitySummaries()] });
