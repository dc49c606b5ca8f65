/**
 * The drift family's tables (docs/chaos/results/drift.json → docs/chaos.md region chaos-drift and
 * docs/day-two.md region drift-repair, rendered by `npm run docs`): per planted kind, how it was
 * planted, the policy, the time until the reconciler alone had repaired it and how many reconcile
 * runs that took, the repair workflows in history, and the result.
 */
import type { DriftCaseResult } from './drift.ts';
import { countByStatus, markdownReport, type RunSummary } from './report.ts';

const seconds = (ms: number | null) => (ms === null ? '—' : `${(ms / 1000).toFixed(1)} s`);
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function status(r: DriftCaseResult): string {
  if (r.skipped) return `skipped: ${r.notes.join('; ')}`;
  return r.passed ? 'passed' : `**failed**: ${(r.failure ?? '').slice(0, 300)}`;
}

/** One row per planted drift (not the kills): kind, plant, policy, time to repair, runs, repairs, result. */
export function driftKindTable(s: RunSummary): string {
  const rows = (s.results as DriftCaseResult[]).filter((r) => r.drift && !r.scenario.startsWith('kill '));
  if (rows.length === 0) return '_No drift case in this run._';
  const period = rows.find((r) => r.drift)?.drift?.periodS;
  const out = [
    `Reconciler period ${period} s (\`TETHER_RECONCILE_INTERVAL_SECONDS\`); a drift must be repaired by a repair workflow the reconciler started, no later than the second reconcile run after the plant.`,
    '',
    '| finding kind(s) | planted as | policy | time to repair | reconcile runs | repair workflow(s) in history | result |',
    '|---|---|---|---:|---:|---|---|',
  ];
  for (const r of rows) {
    const d = r.drift!;
    const repairs = d.repairs.map((x) => `\`${x.workflowId.replace(/-[0-9a-f]{8}-[0-9a-f-]{27}/g, '-…')}\` ${x.outcome}${x.parent ? ' (reconciler)' : ''}`).join(', ') || '—';
    const time = d.policy === 'report-only' && d.timeToRepairMs !== null ? `${seconds(d.timeToRepairMs)} (reported)` : seconds(d.timeToRepairMs);
    const plant = r.scenario.includes('power cut') ? `power cut: ${d.plant}` : d.plant;
    out.push(`| ${d.kinds.map((k) => `\`${k}\``).join(', ')} | ${cell(plant)} | ${d.policy} | ${time} | ${d.reconcileRuns ?? '—'} | ${cell(repairs)} | ${cell(status(r))} |`);
  }
  return out.join('\n');
}

/** The kills during repairs and swaps: one row each. */
export function driftKillTable(s: RunSummary): string {
  const rows = s.results.filter((r) => r.scenario.startsWith('kill '));
  if (rows.length === 0) return '';
  const out = ['| killed | outcome | converged in | notes | result |', '|---|---|---:|---|---|'];
  for (const r of rows) out.push(`| ${r.scenario.replace(/^kill /, '')} | ${r.outcome} | ${seconds(r.convergeMs)} | ${cell(r.notes.join('; '))} | ${cell(status(r as DriftCaseResult))} |`);
  return out.join('\n');
}

export function driftMarkdown(s: RunSummary, file: string): string {
  const n = countByStatus(s.results);
  return [
    markdownReport(s).split('\n')[0]!,
    '',
    driftKindTable(s),
    '',
    'Kills during repairs and swaps (SIGKILL of the process running the step, restarted; must converge, the checker clean):',
    '',
    driftKillTable(s),
    '',
    `${n.passed} passed, ${n.failed} failed, ${n.skipped} skipped. From [\`${file}\`](${file.replace(/^docs\//, '')}).`,
  ].join('\n');
}
