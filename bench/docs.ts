/**
 * What README.md and docs/bench/README.md show of a benchmark run, rendered from its results
 * (docs/bench/latest.json) by `npm run docs` (scripts/generate-docs.ts): no figure in those files is
 * typed by hand. Every function returns markdown; a part the run did not measure says so.
 */
import type { CellResult } from './load.ts';
import type { HistorySummary } from './history.ts';
import { floorLine, historyTable, neighboursTable, overheadRows, overheadTable, matrixTable, pooled, scaleTable, scaleVariantsTable, type BenchResults } from './report.ts';
import { ratio, roundTo } from './stats.ts';

const range = (xs: number[], unit = '', digits = 1): string => {
  const v = xs.filter(Number.isFinite);
  if (v.length === 0) return '—';
  const lo = roundTo(Math.min(...v), digits);
  const hi = roundTo(Math.max(...v), digits);
  return lo === hi ? `${lo}${unit}` : `${lo}–${hi}${unit}`;
};
const list = (xs: Array<number | undefined>, unit = '') => `${xs.map((x) => (x === undefined ? '—' : String(x))).join(' / ')}${unit}`;
const pct = (after: number, before: number) => `${after >= before ? '+' : '−'}${Math.abs(Math.round((after / before - 1) * 100))} %`;

function cell(cells: CellResult[], mode: string, concurrency: number, instances: number): CellResult | undefined {
  return cells.find((c) => c.mode === mode && c.concurrency === concurrency && c.instances === instances);
}

/** Temporal and direct cells of the matrix with one client, by instance count. */
function singleClient(r: BenchResults) {
  const counts = [...new Set(r.matrix.filter((m) => m.concurrency === 1).map((m) => m.instances))].sort((a, b) => a - b);
  return counts.map((i) => ({ instances: i, t: cell(r.matrix, 'temporal', 1, i), d: cell(r.matrix, 'direct', 1, i) }));
}

function cinderSingle(r: BenchResults) {
  const cells = r.cinder?.cells ?? [];
  const t = cells.find((c) => c.mode === 'temporal' && c.concurrency === 1);
  return t ? { t, d: cell(cells, 'direct', 1, t.instances) } : undefined;
}

/** "`npm run bench` at commit X, date, N cores, other load a–b cores". */
export function runLine(r: BenchResults): string {
  const m = r.meta;
  const other = [...r.matrix, ...(r.cinder?.cells ?? [])].map((c) => c.machine.otherCores);
  const took = typeof m.durationS === 'number' ? `, ${m.durationS} s` : '';
  const command = typeof m.command === 'string' ? m.command : 'npm run bench';
  return (
    `\`${command}\` (${String(m.profile)} profile) at commit \`${String(m.commit)}\`, ${String(m.date).replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}${took}, ` +
    `on ${String(m.cpus)} cores with ${range(other, ' core')} used by other processes meanwhile; PostgreSQL ${String(m.postgres)}, domains ${String(m.domains)}.`
  );
}

/** README's table: p50 with one client unless said, Temporal next to direct. */
export function summaryTable(r: BenchResults): string {
  const one = singleClient(r);
  const over = one.filter((x) => x.t && x.d).map((x) => x.t!.attach.p50 - x.d!.attach.p50);
  const work = one.filter((x) => x.t && x.d).map((x) => x.d!.attach.p50);
  const overRatio = one.filter((x) => x.t && x.d).map((x) => (x.t!.attach.p50 - x.d!.attach.p50) / x.d!.attach.p50);
  const counts = one.map((x) => x.instances).join(' / ');
  const rows: string[] = ['| | through Temporal | direct | |', '|---|---:|---:|---|'];
  rows.push(
    `| a whole attach, embedded volume service (${counts} instances) | ${list(one.map((x) => x.t?.attach.p50), ' ms')} | ${list(one.map((x) => x.d?.attach.p50), ' ms')} | overhead ${range(over, ' ms', 0)} = **${range(overRatio, '× the work')}** |`,
  );
  const c = cinderSingle(r);
  if (c?.d) {
    const o = c.t.attach.p50 - c.d.attach.p50;
    rows.push(`| a whole attach, real Cinder (${c.t.instances} instances) | ${c.t.attach.p50} ms | ${c.d.attach.p50} ms | overhead ${roundTo(o, 0)} ms = **${ratio(o, c.d.attach.p50)}× the work** |`);
  }
  if (r.floor) rows.push(`| the floor: a workflow of the attach's shape whose steps do nothing | ${r.floor.attachShaped.p50} ms | | Temporal + SDK alone |`);
  if (r.floor?.allLocal) rows.push(`| the floor of any design: the 8 steps as local activities in one workflow task | ${r.floor.allLocal.p50} ms | | |`);
  rows.push(`| the API's answer to an attach (the reservation) | ${range(one.map((x) => x.t?.reservation.p50 ?? Number.NaN), ' ms', 0)} | ${range(one.map((x) => x.d?.reservation.p50 ?? Number.NaN), ' ms', 0)} | |`);
  rows.push(
    `| attach+detach cycle, ${counts} instances | ${list(one.map((x) => x.t && roundTo(x.t.cycle.p50, 0)), ' ms')} | ${list(one.map((x) => x.d && roundTo(x.d.cycle.p50, 0)), ' ms')} | ${range(one.filter((x) => x.t && x.d).map((x) => x.t!.cycle.p50 / x.d!.cycle.p50), '×')} |`,
  );
  const t8 = cell(r.matrix, 'temporal', 8, 8);
  const d8 = cell(r.matrix, 'direct', 8, 8);
  if (t8 && d8) rows.push(`| throughput, 8 instances × 8 clients | ${t8.throughput} cycles/s | ${d8.throughput} cycles/s | ${ratio(d8.throughput, t8.throughput)}× fewer |`);
  rows.push(
    `| CPU per cycle, every cell | ${range(r.matrix.filter((m) => m.mode === 'temporal').map((m) => m.cpuMsPerCycle.total), ' ms', 0)} | ${range(r.matrix.filter((m) => m.mode === 'direct').map((m) => m.cpuMsPerCycle.total), ' ms', 0)} | |`,
  );
  const s = r.scale?.points ?? [];
  if (s.length > 1) {
    const first = s[0]!;
    const last = s[s.length - 1]!;
    const perInstance = (last.agentRssMb - first.agentRssMb) / (last.instances - first.instances);
    rows.push(
      `| one compute agent hosting ${s.map((p) => p.instances).join(' / ')} instances, idle | ${list(s.map((p) => p.agentRssMb))} MB, ≤ ${Math.max(...s.slice(1).map((p) => p.agentIdleCpuPct))} % CPU from ${s[1]!.instances} on | | ~${roundTo(perInstance, 2)} MB per instance |`,
    );
    rows.push(`| ${last.instances} instances appearing at once: all queues serving after | ${roundTo(last.allServingMs / 1000, 2)} s | | |`);
  }
  return rows.join('\n');
}

/** The overhead against the work, in words, from the same cells (README and docs/bench/README.md). */
export function overheadFindings(r: BenchResults): string {
  const one = singleClient(r).filter((x) => x.t && x.d);
  const over = one.map((x) => x.t!.attach.p50 - x.d!.attach.p50);
  const work = one.map((x) => x.d!.attach.p50);
  const c = cinderSingle(r);
  const parts = [`Orchestration costs ${range(over, ' ms', 0)} per attach (Temporal's attach p50 minus the direct one, one client) against the embedded volume service's ${range(work, ' ms', 0)} of work`];
  if (c?.d) parts.push(`, and ${roundTo(c.t.attach.p50 - c.d.attach.p50, 0)} ms against a real Cinder's ${roundTo(c.d.attach.p50, 0)} ms: ${ratio(c.t.attach.p50 - c.d.attach.p50, c.d.attach.p50)}× the work there`);
  parts.push(`, ${range(one.map((x) => (x.t!.attach.p50 - x.d!.attach.p50) / x.d!.attach.p50), '×')} with the embedded service.`);
  if (r.floor) {
    parts.push(
      ` Temporal and the TypeScript SDK alone take ${r.floor.attachShaped.p50} ms for a workflow of the attach's shape whose steps do nothing (the floor, bench/floor.ts)` +
        (r.floor.allLocal ? `, and the eight steps as local activities in one workflow task — the floor of any design on Temporal — ${r.floor.allLocal.p50} ms.` : '; the floor of any design (the eight steps as local activities in one workflow task) is not in this run\'s results.'),
    );
  }
  return parts.join('');
}

/** docs/bench/README.md, section 0: the overhead table and the floor. */
export function overheadSection(r: BenchResults): string {
  return [overheadTable(overheadRows(r)), '', floorLine(r.floor), '', overheadFindings(r)].join('\n');
}

/** docs/bench/README.md, section 1: the cycles, the Cinder cells, what durability costs in CPU. */
export function cyclesSection(r: BenchResults): string {
  const out = [matrixTable(r)];
  const cells = r.cinder?.cells ?? [];
  const concs = [...new Set(cells.map((c) => c.concurrency))].sort((a, b) => a - b);
  const pairs = concs.map((c) => ({ c, t: cells.find((x) => x.mode === 'temporal' && x.concurrency === c), d: cells.find((x) => x.mode === 'direct' && x.concurrency === c) })).filter((p) => p.t && p.d);
  if (pairs.length) {
    out.push('');
    out.push(
      `Against the real Cinder (${r.cinder!.instances} instances): cycle p50 ` +
        pairs.map((p) => `${roundTo(p.t!.cycle.p50, 0)} vs ${roundTo(p.d!.cycle.p50, 0)} ms at ${p.c} client${p.c > 1 ? 's' : ''} (${ratio(p.t!.cycle.p50, p.d!.cycle.p50)}×)`).join(', ') +
        `; CPU per cycle ${pairs.map((p) => `${p.t!.cpuMsPerCycle.total} vs ${p.d!.cpuMsPerCycle.total} ms`).join(', ')}.`,
    );
  } else if (r.cinder?.skipped) {
    out.push('', `The Cinder part was skipped: ${r.cinder.skipped}`);
  }
  const extra = r.matrix.filter((m) => m.mode === 'temporal').map((t) => {
    const d = cell(r.matrix, 'direct', t.concurrency, t.instances);
    return d ? t.cpuMsPerCycle.total - d.cpuMsPerCycle.total : Number.NaN;
  });
  const t81 = cell(r.matrix, 'temporal', 1, 8);
  const d81 = cell(r.matrix, 'direct', 1, 8);
  const byGroup = t81 ? Object.entries(t81.cpuMsPerCycle.byGroup).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([g, ms]) => `${g} ${ms}`).join(', ') : '';
  const best = (mode: string) => Math.max(...r.matrix.filter((m) => m.mode === mode).map((m) => m.throughput));
  out.push('');
  out.push(
    `Durability costs ${range(extra, ' CPU ms', 0)} per attach+detach over the direct cycle` +
      (t81 && d81 ? ` (8 instances, 1 client: ${byGroup} CPU ms through Temporal, against ${d81.cpuMsPerCycle.total} ms for the whole direct cycle)` : '') +
      `; on ${String(r.meta.cpus)} cores the durable stack peaked at ${best('temporal')} cycles/s, the direct calls at ${best('direct')}.`,
  );
  return out.join('\n');
}

/** docs/bench/README.md, section 2: one attach and one detach run of the 1-instance, 1-client cell. */
export function timeSection(r: BenchResults): string {
  const h = r.histories.find((x) => x.concurrency === 1) ?? r.histories[0];
  if (!h) return '(no histories in this run)';
  const direct = cell(r.matrix, 'direct', h.concurrency, h.instances)?.stepsP50;
  return [`${h.instances} instance(s), ${h.concurrency} client(s):`, '', historyTable(h.attach, direct), '', historyTable(h.detach, direct)].join('\n');
}

/** docs/bench/README.md, section 3: the scale table and what it says. */
export function scaleSection(r: BenchResults): string {
  const s = r.scale?.points ?? [];
  const run = r.scale?.run;
  const out = [
    ...(run ? [`Measured on its own: \`${run.command}\` at ${run.commit}, ${run.date}, load average ${run.loadStart} → ${run.loadEnd} (2 cores).`, ''] : []),
    scaleTable(r.scale),
    ...(r.scaleVariants?.length ? ['', 'The agent process changed (A/B, same run, one agent after the other):', '', scaleVariantsTable(r)] : []),
  ];
  if (s.length > 1) {
    const first = s[0]!;
    const last = s[s.length - 1]!;
    out.push('');
    out.push(
      `${last.instances} hosted instances cost the agent ~${roundTo((last.agentRssMb - first.agentRssMb) / (last.instances - first.instances), 2)} MB each ` +
        `(${first.agentRssMb} → ${last.agentRssMb} MB) and ${last.agentIdleCpuPct} % of a core at idle; the dev server ~${roundTo((last.devServerRssMb - first.devServerRssMb) / (last.instances - first.instances), 2)} MB each ` +
        `and ${last.devServerIdleCpuPct} % of a core for all of them. A new instance's queue serves its first activity ${range(s.map((p) => p.timeToServeMs), ' ms', 0)} after its row appears.`,
    );
  }
  return out.join('\n');
}

export function neighboursSection(r: BenchResults): string {
  return neighboursTable(r);
}

/** docs/bench/README.md, section 5: totals of the stack at rest and under the heaviest load. */
export function resourcesSection(r: BenchResults): string {
  const total = (rows: CellResult['resources']) => ({
    rss: Math.round(rows.reduce((a, g) => a + g.rssMb, 0)),
    pss: Math.round(rows.reduce((a, g) => a + g.pssMb, 0)),
    cores: roundTo(rows.reduce((a, g) => a + g.cpuCores, 0), 2),
  });
  const rest = total(r.rest.resources);
  const heavy = [...r.matrix].filter((m) => m.mode === 'temporal').sort((a, b) => b.concurrency * 1000 + b.instances - (a.concurrency * 1000 + a.instances))[0];
  const out = [`At rest: **${rest.rss} MB RSS / ${rest.pss} MB PSS** for the whole stack, ${rest.cores} core.`];
  if (heavy) {
    const t = total(heavy.resources);
    const d = cell(r.matrix, 'direct', heavy.concurrency, heavy.instances);
    const dt = d ? total(d.resources) : undefined;
    out.push(
      ` Under load (${heavy.instances} instances, ${heavy.concurrency} clients): ${t.rss} MB RSS / ${t.pss} MB PSS through Temporal, ${t.cores} cores` +
        (dt ? `; ${dt.rss} / ${dt.pss} MB and ${dt.cores} cores directly.` : '.'),
    );
  }
  return out.join('');
}

/** What each A/B variant of the benchmark is, as a change (bench/variants). */
const CHANGES: Record<string, { label: string; shippedIs: 'before' | 'after' }> = {
  'regular-activities': { label: 'control-plane steps as local activities', shippedIs: 'after' },
  'separate-connector': { label: 'the host connector read with the device name', shippedIs: 'after' },
  'worker-tuning': { label: 'control worker with 2 pollers instead of 10 (not taken)', shippedIs: 'before' },
};

const events = (h?: HistorySummary) => (h ? `${h.eventsP50} events, ${h.workflowTasksP50} workflow tasks` : '—');

/** Before → after of each A/B variant, measured side by side in one run (README and docs/bench/README.md). */
export function changesTable(r: BenchResults): string {
  if (r.variants.length === 0) return '(no A/B variants in this run)';
  const rows = ['| change | p50 cycle before → after | throughput | CPU per cycle | attach history before → after |', '|---|---|---|---|---|'];
  for (const v of r.variants) {
    const change = CHANGES[v.name] ?? { label: v.name, shippedIs: 'after' as const };
    // the JSON's "before" is the variant when the shipped code is "after" (regular-activities), and the shipped code otherwise
    const sides = v.cells.map((c) => ({ c, before: pooled(c.before), after: pooled(c.after) }));
    const p50 = sides.map((x) => `${roundTo(x.before.p50, 0)} → ${roundTo(x.after.p50, 0)} ms (${x.c.concurrency} client${x.c.concurrency > 1 ? 's' : ''})`).join(', ');
    const tp = sides.map((x) => pct(x.after.throughput, x.before.throughput)).join(' / ');
    const cpu = sides.map((x) => pct(x.after.cpuMsPerCycle, x.before.cpuMsPerCycle)).join(' / ');
    rows.push(`| ${change.label} | ${p50} | ${tp} | ${cpu} | ${events(v.historyBefore?.attach)} → ${events(v.historyAfter?.attach)} |`);
  }
  return rows.join('\n');
}
