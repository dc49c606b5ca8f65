/**
 * Results of a chaos run: one CaseResult per scenario run, the printed table (scenario × runs ×
 * passed / failed / skipped × converged × leaked resources × time to converge), the closing line
 * `N passed, N failed, N skipped`, and the JSON file (docs/chaos/results/<name>.json, see chaos/run.ts).
 * A skipped case (its fault could not be made here, e.g. libvirtd with --no-libvirtd) is neither
 * passed nor failed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

export interface CaseResult {
  /** e.g. `kill attach attachDisk during compute-agent`, `race concurrent-attaches-one-instance`. */
  scenario: string;
  /** 1-based repetition (`--runs N`). */
  run: number;
  /** Ran and met every requirement (false when skipped). */
  passed: boolean;
  /** Did not run: the fault cannot be made here; `notes` say why. Counted apart from passed and failed. */
  skipped?: boolean;
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
  /** The command that made it, e.g. `npm run chaos -- --short --seed 1`. */
  command: string;
  /** CPUs and the 1-minute load average when the run started and ended (times to converge grow with load). */
  machine: { cpus: number; loadStart: number; loadEnd: number };
  /** short, full, or a family (compensation, lifecycle, fuzz, concurrent, long). */
  mode: string;
  seed: number;
  runs: number;
  startedAt: string;
  durationMs: number;
  passed: number;
  failed: number;
  skipped: number;
  /** `<scenario>: <why>` for every skipped case run. */
  skippedCases: string[];
  /** Worker processes that exited without being killed. */
  crashes: string[];
  tree: string;
  /** Set while the run goes (the JSON is written after every case) and left on a run that never finished. */
  incomplete?: string;
  results: CaseResult[];
}

export type CaseStatus = 'passed' | 'failed' | 'skipped';

export function statusOf(r: CaseResult): CaseStatus {
  return r.skipped ? 'skipped' : r.passed ? 'passed' : 'failed';
}

export function countByStatus(results: readonly CaseResult[]): Record<CaseStatus, number> {
  const n: Record<CaseStatus, number> = { passed: 0, failed: 0, skipped: 0 };
  for (const r of results) n[statusOf(r)]++;
  return n;
}

function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** One row per scenario: runs, passed / failed / skipped, converged (of the runs not skipped), leaked, time to converge (median / max). */
export function formatTable(results: readonly CaseResult[]): string {
  const groups = new Map<string, CaseResult[]>();
  for (const r of results) groups.set(r.scenario, [...(groups.get(r.scenario) ?? []), r]);
  const header = ['SCENARIO', 'RUNS', 'PASSED', 'FAILED', 'SKIPPED', 'CONVERGED', 'LEAKED', 'CONVERGE (median / max)', 'OUTCOMES'];
  const rows = [...groups].map(([scenario, rs]) => {
    const times = rs.map((r) => r.convergeMs).filter((t): t is number => t !== null).sort((a, b) => a - b);
    const median = times.length ? times[Math.floor((times.length - 1) / 2)]! : null;
    const max = times.length ? times[times.length - 1]! : null;
    const outcomes = new Map<string, number>();
    for (const r of rs) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
    const n = countByStatus(rs);
    const ran = rs.filter((r) => !r.skipped);
    return [
      scenario,
      String(rs.length),
      String(n.passed),
      String(n.failed),
      String(n.skipped),
      ran.length ? `${ran.filter((r) => r.converged).length}/${ran.length}` : '-',
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
  const failed = results.filter((r) => statusOf(r) === 'failed');
  if (failed.length === 0) return '';
  return ['Failures:', ...failed.map((r) => `  ✗ ${r.scenario} (run ${r.run}, seed ${r.seed}): ${r.failure ?? 'failed'}${r.notes.length ? `\n      ${r.notes.join('\n      ')}` : ''}`)].join('\n');
}

/** The plain closing line CI reads. */
export function summaryLine(results: readonly CaseResult[]): string {
  const n = countByStatus(results);
  return `${n.passed} passed, ${n.failed} failed, ${n.skipped} skipped`;
}

export async function writeJson(file: string, summary: RunSummary): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, `${JSON.stringify(summary, null, 2)}\n`);
}

/**
 * docs/chaos.md's account of one run, from its JSON (`npm run docs`): the command, tree, machine and
 * closing line; the kill cases by killed target; every other scenario; the failures and skipped cases.
 */
export function markdownReport(s: RunSummary, o: { notes?: boolean; bySteps?: boolean } = {}): string {
  const out: string[] = [];
  const n = countByStatus(s.results);
  const load = s.machine ? `, ${s.machine.cpus} cores, load average ${s.machine.loadStart} at the start and ${s.machine.loadEnd} at the end` : '';
  out.push(
    `\`${s.command ?? `npm run chaos${s.mode === 'short' ? ' -- --short' : ''}`}\` — seed ${s.seed}, tree ${s.tree}, started ${s.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, ` +
      `${Math.round(s.durationMs / 1000)} s${load}: **\`${n.passed} passed, ${n.failed} failed, ${n.skipped} skipped\`**` +
      `${s.crashes.length ? `; worker processes that exited by themselves: ${s.crashes.join('; ')}` : '; no worker process exited by itself'}.` +
      `${s.incomplete ? ` **Incomplete: ${s.incomplete}.**` : ''}`,
  );
  const isKill = (r: CaseResult) => /^(guest \w+ )?kill /.test(r.scenario);
  const kills = s.results.filter(isKill);
  if (kills.length) {
    const byTarget = new Map<string, CaseResult[]>();
    for (const r of kills) {
      const target = r.scenario.split(' ').at(-1)!;
      byTarget.set(target, [...(byTarget.get(target) ?? []), r]);
    }
    out.push('');
    out.push('| killed | cases | passed | failed | skipped | outcomes | converge median / max | leaked |');
    out.push('|---|---:|---:|---:|---:|---|---|---:|');
    for (const [target, rs] of byTarget) {
      const c = countByStatus(rs);
      const outcomes = new Map<string, number>();
      for (const r of rs) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
      const times = rs.map((r) => r.convergeMs).filter((t): t is number => t !== null).sort((a, b) => a - b);
      const converge = times.length ? `${fmtMs(times[Math.floor((times.length - 1) / 2)]!)} / ${fmtMs(times.at(-1)!)}` : '-';
      out.push(`| ${target} | ${rs.length} | ${c.passed} | ${c.failed} | ${c.skipped} | ${[...outcomes].map(([o, k]) => `${o} ${k}`).join(', ')} | ${converge} | ${rs.reduce((a, r) => a + r.leaked, 0)} |`);
    }
  }
  if (kills.length && o.bySteps) {
    // by operation and step (the phase and the target dropped): where in the saga it was killed
    const byStep = new Map<string, CaseResult[]>();
    for (const r of kills) {
      const words = r.scenario.replace(/^guest \w+ /, '').split(' ');
      const key = words.slice(1, -2).join(' ');
      byStep.set(key, [...(byStep.get(key) ?? []), r]);
    }
    out.push('');
    out.push('| killed during | cases | passed | failed | skipped | outcomes | converge median / max |');
    out.push('|---|---:|---:|---:|---:|---|---|');
    for (const [key, rs] of byStep) {
      const c = countByStatus(rs);
      const outcomes = new Map<string, number>();
      for (const r of rs) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
      const times = rs.map((r) => r.convergeMs).filter((t): t is number => t !== null).sort((a, b) => a - b);
      const converge = times.length ? `${fmtMs(times[Math.floor((times.length - 1) / 2)]!)} / ${fmtMs(times.at(-1)!)}` : '-';
      out.push(`| ${key} | ${rs.length} | ${c.passed} | ${c.failed} | ${c.skipped} | ${[...outcomes].map(([oc, k]) => `${oc} ${k}`).join(', ')} | ${converge} |`);
    }
  }
  const others = s.results.filter((r) => !isKill(r));
  if (others.length) {
    out.push('');
    const cell = (t: string) => t.replace(/\|/g, '\\|').replace(/\n/g, ' ');
    out.push(`| scenario | run | result | outcome | converged in | leaked |${o.notes ? ' notes |' : ''}`);
    out.push(`|---|---:|---|---|---:|---:|${o.notes ? '---|' : ''}`);
    for (const r of others) {
      out.push(`| ${cell(r.scenario)} | ${r.run} | ${statusOf(r)} | ${cell(r.outcome)} | ${r.convergeMs === null ? '-' : fmtMs(r.convergeMs)} | ${r.leaked} |${o.notes ? ` ${cell(r.notes.join('; '))} |` : ''}`);
    }
  }
  const failed = s.results.filter((r) => statusOf(r) === 'failed');
  if (failed.length) {
    out.push('');
    out.push('Failures:');
    out.push('');
    for (const r of failed) out.push(`- ${r.scenario} (run ${r.run}): ${(r.failure ?? 'failed').split('\n')[0]}`);
  }
  if (s.skippedCases?.length) {
    out.push('');
    out.push(`Skipped: ${s.skippedCases.join('; ')}.`);
  }
  return out.join('\n');
}
