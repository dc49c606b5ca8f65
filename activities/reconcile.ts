/**
 * Control-plane activities of the reconciler (workflows/repair-reconcile.ts): the hosts to check,
 * the checker run on a host's snapshot, the findings that persist across two runs, and the report
 * (metrics, Nova-style notifications) of what a run found and did.
 */
import type { Client } from '@temporalio/client';
import type { Database } from '../src/db/database.ts';
import { withTransaction } from '../src/db/database.ts';
import type { VolumeAdmin } from '../src/blockstorage/block-storage.ts';
import { inspectInvariants, type Disagreement } from '../src/checker/invariants.ts';
import { snapshotReader, type HostSnapshot } from '../src/repair/host-snapshot.ts';
import { recordVolumeEvent } from '../src/notifications/outbox.ts';
import { reconcileDisagreements, reconcileFindingsTotal, reconcileRepairsTotal, reconcileRunsTotal } from '../src/metrics/reconcile-metrics.ts';

export function fingerprint(f: Disagreement): string {
  return `${f.kind}/${f.instanceUuid ?? '-'}/${f.volumeId ?? '-'}`;
}

export interface ReconcileReport {
  /** `<workflow id>/<run id>` of the reconcile run. */
  runId: string;
  scopes: Array<{ scope: string; disagreements: number }>;
  findings: Array<{ finding: Disagreement; action: 'repair' | 'report_only' | 'first_seen' | 'rate_limited' | 'in_flight' }>;
  repairs: Array<{ target: string; outcome: string; workflowId: string; instanceUuid?: string; volumeId?: string; error?: string; actions?: string[] }>;
}

export function createReconcileActivities(deps: { db: Database; blockStorage: Pick<VolumeAdmin, 'listVolumes'>; client: Client; controlTaskQueue: string }) {
  const { db } = deps;
  return {
    /** The hosts a run checks: the ones named, or every host neither forced down nor fenced. */
    async reconcileHosts(input: { hosts: string[] | 'all' }): Promise<{ hosts: string[] }> {
      if (input.hosts !== 'all') return { hosts: input.hosts };
      const { rows } = await db.query<{ host: string }>('SELECT host FROM compute_hosts WHERE NOT forced_down AND NOT fenced ORDER BY host');
      return { hosts: rows.map((r) => r.host) };
    },

    /** The checker on one host, its libvirt read from the host's snapshot; disagreements only (in-flight findings are never repaired). */
    async checkHostSnapshot(input: { host: string; snapshot: HostSnapshot }): Promise<{ disagreements: Disagreement[] }> {
      const report = await inspectInvariants({
        db,
        blockStorage: deps.blockStorage,
        libvirt: snapshotReader(input.snapshot),
        client: deps.client,
        controlTaskQueue: deps.controlTaskQueue,
        host: input.host,
        startedAt: new Date(input.snapshot.takenAt),
        ...(input.snapshot.deletedLookedUp ? { deletedOnHost: new Set(input.snapshot.deletedLookedUp) } : {}),
      });
      reconcileDisagreements.set({ scope: input.host }, report.disagreements.length);
      return { disagreements: report.disagreements };
    },

    /**
     * Records this run's findings of a scope and returns those the run before saw too (runs >= 2);
     * what this run did not see is forgotten. Idempotent per run (a retry counts once).
     */
    async persistentFindings(input: { scope: string; runId: string; findings: Disagreement[] }): Promise<{ persistent: Disagreement[] }> {
      return withTransaction(db, async (tx) => {
        const keys = input.findings.map(fingerprint);
        await tx.query('DELETE FROM reconcile_findings WHERE scope = $1 AND NOT (fingerprint = ANY($2::text[]))', [input.scope, keys]);
        const persistent: Disagreement[] = [];
        for (const f of input.findings) {
          const { rows } = await tx.query<{ runs: number }>(
            `INSERT INTO reconcile_findings (scope, fingerprint, kind, instance_uuid, volume_id, detail, last_run)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (scope, fingerprint) DO UPDATE SET
               runs = reconcile_findings.runs + CASE WHEN reconcile_findings.last_run = EXCLUDED.last_run THEN 0 ELSE 1 END,
               last_run = EXCLUDED.last_run, last_seen_at = now(), detail = EXCLUDED.detail
             RETURNING runs`,
            [input.scope, fingerprint(f), f.kind, f.instanceUuid ?? null, f.volumeId ?? null, f.detail, input.runId],
          );
          if (rows[0]!.runs >= 2) persistent.push(f);
        }
        return { persistent };
      });
    },

    /** Metrics and notifications of a run: drift found (instance.volume_drift.found), repairs made (instance.volume_repair.end/.error). */
    async reportReconcile(input: ReconcileReport): Promise<{ notified: number }> {
      reconcileRunsTotal.inc({ outcome: input.findings.length === 0 ? 'clean' : 'drift' });
      for (const f of input.findings) reconcileFindingsTotal.inc({ kind: f.finding.kind, action: f.action });
      for (const r of input.repairs) reconcileRepairsTotal.inc({ target: r.target, outcome: r.outcome });
      let notified = 0;
      await withTransaction(db, async (tx) => {
        for (const f of input.findings) {
          if (!f.finding.instanceUuid || !f.finding.volumeId || f.action === 'in_flight') continue;
          if (await recordVolumeEvent(tx, {
            eventType: 'instance.volume_drift.found',
            operation: `${input.runId}/${fingerprint(f.finding)}`,
            instanceUuid: f.finding.instanceUuid,
            volumeId: f.finding.volumeId,
            fault: { type: f.finding.kind, message: f.finding.detail, step: f.action },
          })) notified++;
        }
        for (const r of input.repairs) {
          if (!r.instanceUuid || !r.volumeId) continue;
          const failed = r.outcome === 'failed';
          if (await recordVolumeEvent(tx, {
            eventType: failed ? 'instance.volume_repair.error' : 'instance.volume_repair.end',
            operation: `${input.runId}/${r.workflowId}`,
            instanceUuid: r.instanceUuid,
            volumeId: r.volumeId,
            fault: failed ? { type: 'RepairFailed', message: r.error ?? 'the repair failed', step: null } : null,
          })) notified++;
        }
      });
      return { notified };
    },
  };
}

export type ReconcileActivities = ReturnType<typeof createReconcileActivities>;
