/**
 * The reconciler's settings (TETHER_RECONCILE_*), read by the control plane, which creates the
 * Temporal Schedule at start (src/repair/reconcile-schedule.ts):
 *
 * - TETHER_RECONCILE_INTERVAL_SECONDS: how often the checker runs (default 600 = 10 minutes; 0 turns
 *   the reconciler off and removes its schedule);
 * - TETHER_RECONCILE_HOSTS: the compute hosts it checks, comma-separated; unset or `all`: every
 *   compute host that is neither forced down nor fenced (the whole cloud, host by host);
 * - TETHER_RECONCILE_REPORT_ONLY: finding kinds it only reports, comma-separated (the kinds that no
 *   saga repairs are always report-only: src/repair/policy.ts);
 * - TETHER_RECONCILE_MAX_REPAIRS: at most this many repair sagas per run (default 10): a rate limit
 *   against a storm of repairs after a wide outage.
 */
import { DISAGREEMENT_KINDS, type DisagreementKind } from '../checker/invariants.ts';
import type { ReconcileInput } from '../domain/contracts/reconcile.ts';

export interface ReconcileConfig extends ReconcileInput {
  intervalSeconds: number;
}

export function loadReconcileConfig(env: NodeJS.ProcessEnv = process.env): ReconcileConfig {
  const interval = env.TETHER_RECONCILE_INTERVAL_SECONDS ?? '600';
  if (!/^\d+$/.test(interval.trim())) throw new Error(`TETHER_RECONCILE_INTERVAL_SECONDS must be a whole number of seconds, got ${interval}`);
  const max = env.TETHER_RECONCILE_MAX_REPAIRS ?? '10';
  if (!/^\d+$/.test(max.trim()) || Number(max) < 1) throw new Error(`TETHER_RECONCILE_MAX_REPAIRS must be a positive whole number, got ${max}`);
  const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const hosts = list(env.TETHER_RECONCILE_HOSTS);
  const reportOnly = list(env.TETHER_RECONCILE_REPORT_ONLY);
  for (const k of reportOnly) {
    if (!DISAGREEMENT_KINDS.includes(k as DisagreementKind)) throw new Error(`TETHER_RECONCILE_REPORT_ONLY: ${k} is no finding kind (${DISAGREEMENT_KINDS.join(', ')})`);
  }
  return {
    intervalSeconds: Number(interval),
    hosts: hosts.length === 0 || (hosts.length === 1 && hosts[0] === 'all') ? 'all' : hosts,
    reportOnly: reportOnly as DisagreementKind[],
    maxRepairs: Number(max),
  };
}
