/**
 * reconcileVolumes: the reconciler, one run per tick of its Temporal Schedule
 * (src/repair/reconcile-schedule.ts).
 *
 *   the hosts to check → per host: its agent reads its domains and secrets (host queue), the
 *   checker runs on that snapshot (control) → findings recorded; only those the run before saw too
 *   go on → per kind: repair or report only (policy) → at most maxRepairs repair sagas, started as
 *   children (in line with each pair's operations, as `tether repair`'s) and awaited → metrics and
 *   notifications of what it found and did
 *
 * In-flight findings are never repaired: the checker leaves out what a running operation explains,
 * a finding must be seen by two runs in a row, a repair of the same thing already running is not
 * started again (its workflow id is taken), and each repair saga waits for the pair's operations.
 * A host whose agent does not answer is reported and skipped. The contract is in
 * src/domain/contracts/reconcile.ts.
 */
import { ParentClosePolicy, executeChild, workflowInfo, type ChildWorkflowOptions } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { ReconcileInput, ReconcileResult } from '../src/domain/contracts/reconcile.ts';
import { REPAIR_WORKFLOWS, type RepairResult } from '../src/domain/contracts/repair.ts';
import type { Disagreement, DisagreementKind } from '../src/checker/invariants.ts';
import type { ReconcileReport } from '../activities/reconcile.ts';
import { describeTarget, repairWorkflowId, selectRepairs, type RepairTarget } from '../src/repair/selection.ts';
import { InstanceUuid, VolumeId } from '../src/temporal/search-attributes.ts';
import { controlLocal, hostRepairActivities } from './activity-options.ts';
import { failureMessage } from './saga.ts';

function childStart(t: RepairTarget, reason: string): { type: string; options: ChildWorkflowOptions & { args: unknown[]; workflowId: string } } {
  const why = `${reason}: ${[...new Set(t.findings.map((f) => f.kind))].join(', ')}`;
  const base = { workflowId: repairWorkflowId(t), parentClosePolicy: ParentClosePolicy.ABANDON };
  switch (t.kind) {
    case 'pair':
      return { type: REPAIR_WORKFLOWS.pair, options: { ...base, args: [{ instanceUuid: t.instanceUuid, volumeId: t.volumeId, reason: why }], typedSearchAttributes: [{ key: InstanceUuid, value: t.instanceUuid }, { key: VolumeId, value: t.volumeId }] } };
    case 'volume-status':
      return { type: REPAIR_WORKFLOWS.volumeStatus, options: { ...base, args: [{ volumeId: t.volumeId, reason: why }], typedSearchAttributes: [{ key: VolumeId, value: t.volumeId }] } };
    case 'qemu-orphans':
      return { type: REPAIR_WORKFLOWS.qemuOrphans, options: { ...base, args: [{ instanceUuid: t.instanceUuid, reason: why }], typedSearchAttributes: [{ key: InstanceUuid, value: t.instanceUuid }] } };
    case 'leaked-secret':
      return { type: REPAIR_WORKFLOWS.leakedSecret, options: { ...base, args: [{ host: t.host, volumeId: t.volumeId, reason: why }], typedSearchAttributes: [{ key: VolumeId, value: t.volumeId }] } };
  }
}

export async function reconcileVolumes(input: ReconcileInput): Promise<ReconcileResult> {
  const info = workflowInfo();
  const runId = `${info.workflowId}/${info.runId}`;
  const result: ReconcileResult = { hosts: [], persistent: 0, started: [], deferred: [], reportOnly: 0 };
  const report: ReconcileReport = { runId, scopes: [], findings: [], repairs: [] };
  const reportOnlyKinds = new Set(input.reportOnly as DisagreementKind[]);

  const { hosts } = await controlLocal.reconcileHosts({ hosts: input.hosts });
  const targets: RepairTarget[] = [];
  for (const host of hosts) {
    let disagreements: Disagreement[];
    try {
      const snapshot = await hostRepairActivities(host).snapshotHostDomains();
      ({ disagreements } = await controlLocal.checkHostSnapshot({ host, snapshot }));
    } catch (err) {
      result.hosts.push({ host, disagreements: 0, error: failureMessage(err) });
      continue;
    }
    result.hosts.push({ host, disagreements: disagreements.length });
    report.scopes.push({ scope: host, disagreements: disagreements.length });
    const { persistent } = await controlLocal.persistentFindings({ scope: host, runId, findings: disagreements });
    result.persistent += persistent.length;
    const seenTwice = new Set(persistent.map((f) => `${f.kind}/${f.instanceUuid}/${f.volumeId}`));
    for (const f of disagreements) if (!seenTwice.has(`${f.kind}/${f.instanceUuid}/${f.volumeId}`)) report.findings.push({ finding: f, action: 'first_seen' });
    const selection = selectRepairs(persistent, { host, reportOnly: reportOnlyKinds });
    result.reportOnly += selection.reportOnly.length;
    for (const r of selection.reportOnly) report.findings.push({ finding: r.finding, action: 'report_only' });
    for (const t of selection.targets) if (!targets.some((x) => repairWorkflowId(x) === repairWorkflowId(t))) targets.push(t);
  }

  const now = targets.slice(0, input.maxRepairs);
  for (const t of targets.slice(input.maxRepairs)) {
    result.deferred.push({ target: describeTarget(t), why: `rate limit: at most ${input.maxRepairs} repairs per run` });
    for (const f of t.findings) report.findings.push({ finding: f, action: 'rate_limited' });
  }
  await Promise.all(now.map(async (t) => {
    const { type, options } = childStart(t, `reconciler ${info.workflowId}`);
    const pair = t.kind === 'pair' ? { instanceUuid: t.instanceUuid, volumeId: t.volumeId } : {};
    try {
      const r = (await executeChild(type, options as never)) as RepairResult;
      for (const f of t.findings) report.findings.push({ finding: f, action: 'repair' });
      result.started.push({ workflowId: options.workflowId, target: describeTarget(t), outcome: r.outcome });
      report.repairs.push({ target: t.kind, outcome: r.outcome, workflowId: options.workflowId, actions: r.actions, ...pair });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        result.deferred.push({ target: describeTarget(t), why: `a repair of it runs already (${options.workflowId})` });
        for (const f of t.findings) report.findings.push({ finding: f, action: 'in_flight' });
        return;
      }
      for (const f of t.findings) report.findings.push({ finding: f, action: 'repair' });
      result.started.push({ workflowId: options.workflowId, target: describeTarget(t), outcome: 'failed' });
      report.repairs.push({ target: t.kind, outcome: 'failed', workflowId: options.workflowId, error: failureMessage(err), ...pair });
    }
  }));
  await controlLocal.reportReconcile(report);
  return result;
}
