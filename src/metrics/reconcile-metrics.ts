/** The reconciler's metrics (workflows/repair-reconcile.ts), filled by the control plane's reconcile activities. */
import { registry } from './tether-metrics.ts';

export const reconcileRunsTotal = registry.counter<'outcome'>({
  name: 'tether_reconcile_runs_total',
  help: 'Reconcile runs (the Temporal Schedule), by outcome (clean, drift).',
  labelNames: ['outcome'],
});

export const reconcileFindingsTotal = registry.counter<'kind' | 'action'>({
  name: 'tether_reconcile_findings_total',
  help: 'Findings of reconcile runs by kind and what the run did with them: repair (started a repair saga), report_only (policy), first_seen (waits for a second run), rate_limited, in_flight (a repair of it ran already).',
  labelNames: ['kind', 'action'],
});

export const reconcileRepairsTotal = registry.counter<'target' | 'outcome'>({
  name: 'tether_reconcile_repairs_total',
  help: 'Repair sagas the reconciler started, by target (pair, volume-status, qemu-orphans, leaked-secret) and outcome (repaired, nothing-to-do, superseded, skipped, failed).',
  labelNames: ['target', 'outcome'],
});

export const reconcileDisagreements = registry.gauge<'scope'>({
  name: 'tether_reconcile_disagreements',
  help: 'Disagreements the last reconcile run found, by scope (host).',
  labelNames: ['scope'],
});
