/**
 * The repair sagas' contract (workflows/repair-volume.ts): inputs, results, workflow ids, the
 * `progress` query. One saga per thing a finding names: a (server, volume) pair, a volume's status,
 * an instance's QEMU orphans, a host's leaked secret. Safe to import from workflows.
 */
import { defineQuery } from '@temporalio/workflow';
import { PROGRESS_QUERY, type OperationProgress } from './operation.ts';
import type { RepairPlan } from '../repair-plan.ts';

export const REPAIR_WORKFLOWS = {
  pair: 'repairVolumePair',
  volumeStatus: 'repairVolumeStatus',
  qemuOrphans: 'repairQemuOrphans',
  leakedSecret: 'repairLeakedSecret',
} as const;

export function repairPairWorkflowId(instanceUuid: string, volumeId: string): string {
  return `repair-${instanceUuid}-${volumeId}`;
}
export function repairVolumeWorkflowId(volumeId: string): string {
  return `repair-volume-${volumeId}`;
}
export function repairQemuOrphansWorkflowId(instanceUuid: string): string {
  return `repair-qemu-${instanceUuid}`;
}
export function repairSecretWorkflowId(host: string, volumeId: string): string {
  return `repair-secret-${host}-${volumeId}`;
}

export interface RepairPairInput {
  instanceUuid: string;
  volumeId: string;
  /** Why (the findings, or `reconciler`): recorded in history. */
  reason: string;
}

export interface RepairVolumeStatusInput {
  volumeId: string;
  reason: string;
}

export interface RepairQemuOrphansInput {
  instanceUuid: string;
  reason: string;
}

export interface RepairLeakedSecretInput {
  host: string;
  volumeId: string;
  reason: string;
}

/**
 * - repaired: every planned action done;
 * - nothing-to-do: the stores agreed when the repair looked (someone repaired it first, or it was in flight);
 * - superseded: a newer attach, detach or repair took the pair meanwhile and owns it now (the repair
 *   stopped where it was, without undoing anything under the newer operation);
 * - skipped: the repair would not act (the reason is in notes).
 */
export type RepairOutcome = 'repaired' | 'nothing-to-do' | 'superseded' | 'skipped';

export interface RepairResult {
  outcome: RepairOutcome;
  /** The actions done, in words. */
  actions: string[];
  notes: string[];
}

export interface RepairProgress extends OperationProgress {
  plan: RepairPlan | null;
}

export const repairProgressQuery = defineQuery<RepairProgress>(PROGRESS_QUERY);

export const REPAIR_STEPS = {
  awaitPairOperations: 'Wait until no attach, detach or extend of the pair runs (the repair goes in line with them)',
  observeGeneration: "Take the pair's generation as it is: any newer operation of the pair makes the repair's steps refused",
  readPairStores: 'Read the BDM, the volume and its attachment',
  inspectPairDisk: "Read the domain's disk of the volume and the secrets it names (on the instance's host)",
  getHostConnector: "Read the host connector (on the instance's host)",
  syncVolumeStatus: "Make the volume's status agree with its attachments",
  removeQemuOrphanDisks: "Remove the disks QEMU holds that the live XML does not list (on the instance's host)",
  removeLeakedSecrets: "Remove the volume's libvirt secrets no BDM on the host needs (on the host)",
} as const;
