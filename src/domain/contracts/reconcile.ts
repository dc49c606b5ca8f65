/** The reconciler's contract (workflows/repair-reconcile.ts), started by its Temporal Schedule. Safe to import from workflows. */

export const RECONCILE_WORKFLOW = 'reconcileVolumes';

/** One schedule per control task queue (one deployment). */
export function reconcileScheduleId(controlTaskQueue: string): string {
  return `tether-reconcile-${controlTaskQueue}`;
}

export interface ReconcileInput {
  /** The compute hosts to check, or every host neither forced down nor fenced. */
  hosts: string[] | 'all';
  /** Finding kinds only reported (names of src/checker/invariants.ts DisagreementKind). */
  reportOnly: string[];
  /** At most this many repair sagas per run. */
  maxRepairs: number;
}

export interface ReconcileResult {
  hosts: Array<{ host: string; disagreements: number; error?: string }>;
  /** Findings seen by this run and the one before (candidates for repair). */
  persistent: number;
  started: Array<{ workflowId: string; target: string; outcome: string }>;
  /** Repairs not started this run: rate limit, policy, a repair of it running. */
  deferred: Array<{ target: string; why: string }>;
  reportOnly: number;
}
