/**
 * Results of a chaos run: one CaseResult per scenario run, the printed table (scenario × runs ×
 * converged × leaked resources × time to converge), the closing line `N passed, N failed`, and the
 * JSON file (chaos-results/latest.json by default).
 */
import fs from 'node:fs/promises';
import path from 'node:path';

export interface CaseResult {
  /** e.g. `kill attach attachDisk during compute-agent`, `race concurrent-attaches-one-instance`. */
  scenario: string;
  /** 1-based repetition (`--runs N`). */
  run: number;
  passed: boolean;
  /** Every workflow of the case closed and the checker found nothing, within the deadline. */
  converged: boolean;
  /** How it ended: attached, rolled-back, detached, kept-attached, skipped, … */
  outcome: string;
  /** Disagreements the checker reported, plus resources left half-way, plus workflows still running. */
  leaked: number;
  /** From the fault (kill, stop, refusal) until converged; null when it never converged or does not apply. */
  convergeMs: number | null;
  /** Whether the fault hit where it was aimed (false: the operation passed the point before the trigger). */
  triggered?: boolean;
  seed: number;
  notes: string[];
  /** Only on failures: why. */
  failure?: string;
}

export interface RunSummary {
  mode: 'short' | 'full';
  seed: number;
  runs: number;
  startedAt: string;
  durationMs: number;
  passed: number;
  failed: number;
  skipped: string[];
  /** Worker processes that exited without being killed. */
  crashes: string[];
  tree: string;
  results: CaseResult[];
}

function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** One row per scenario: runs, converged, leaked, time to converge (median / max). */
export function formatTable(results: readonly CaseResult[]): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of results) groups.set(r.scenario, [...(groups.get(r.scenario) ?? []), r]);
  const header = ['SCENARIO', 'RUNS', 'PASSED', 'CONVERGED', 'LEAKED', 'CONVERGE (median / max)', 'OUTCOMES'];
  const rows = [...groups].map(([scenario, rs]) => {
    const times = rs.map((r) => r.convergeMs).filter((t): t is number => t !== null).sort((a, b) => a - b);
    const median = times.length ? times[Math.floor((times.length - 1) / 2)]! : null;
    const max = times.length ? times[times.length - 1]! : null;
    const outcomes = new Map<string, number>();
    for (const r of rs) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
    return [
      scenario,
      String(rs.length),
      `${rs.filter((r) => r.passed).length}/${rs.length}`,
      `${rs.filter((r) => r.converged).length}/${rs.length}`,
      String(rs.reduce((n, r) => n + r.leaked, 0)),
      median === null ? '-' : `${fmtMs(median)} / ${fmtMs(max!)}`,
      [...outcomes].map(([o, n]) => (n > 1 ? `${o}×${n}` : o)).join(', '),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatFailures(results: readonly CaseResult[]): string {
  const failed = results.filter((r) => !r.passed);
  if (failed.length === 0) return '';
  return ['Failures:', ...failed.map((r) => `  ✗ ${r.scenario} (run ${r.run}, seed ${r.seed}): ${r.failure ?? 'failed'}${r.notes.length ? `\n      ${r.notes.join('\n      ')}` : ''}`)].join('\n');
}

/** The plain closing line CI reads. */
export function summaryLine(results: readonly CaseResult[]): string {
  const passed = results.filter((r) => r.passed).length;
  return `${passed} passed, ${results.length - passed} failed`;
}

export async function writeJson(file: string, summary: RunSummary): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, `${JSON.stringify(summary, null, 2)}\n`);
}
