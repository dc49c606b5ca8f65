/** Tables for the terminal and docs/bench/results.md, the JSON files and the SVG charts. */
import fs from 'node:fs';
import path from 'node:path';
import type { CellResult } from './load.ts';
import type { HistorySummary } from './history.ts';
import type { ScaleResult } from './scale.ts';
import type { GroupSample } from './procs.ts';
import { axis, cdfPoints, color, lineChart, stackedBars, type Bar, type LineSeries } from './svg.ts';
import { ratio, roundTo, rounded, summarize } from './stats.ts';
import type { FloorResult } from './floor.ts';
import { ownCpu, sharedCpu, type NovaPartResult } from './nova.ts';
import { clusterTable, type ClusterPartResult } from './cluster-report.ts';
import { cliLines, cliTable, type CliResult } from './cli.ts';
import { targetsTable } from './targets.ts';

export interface VariantComparison {
  name: string;
  description: string;
  cells: Array<{ concurrency: number; instances: number; before: CellResult[]; after: CellResult[] }>;
  historyBefore?: { attach?: HistorySummary; detach?: HistorySummary };
  historyAfter?: { attach?: HistorySummary; detach?: HistorySummary };
}

export interface BenchResults {
  meta: Record<string, unknown>;
  rest: { resources: Array<GroupSample & { cpuCores: number }> };
  matrix: CellResult[];
  histories: Array<{ concurrency: number; instances: number; attach?: HistorySummary; detach?: HistorySummary }>;
  neighbours?: {
    background: { concurrency: number; instances: number; cycles: number; errors: number; throughput: number };
    quiet: Record<string, CellResult>;
    busy: Record<string, CellResult>;
  };
  scale?: ScaleResult;
  /** The same scale part with the agent process changed (A/B: one agent after the other, same run). */
  scaleVariants?: ScaleResult[];
  variants: VariantComparison[];
  /** Workflows of the attach's and detach's shape whose steps do nothing (bench/floor.ts). */
  floor?: FloorResult;
  /** The same cycles against a real Cinder (block storage work of a real deployment's kind). */
  cinder?: {
    mode: string;
    driver: string;
    instances: number;
    cells: CellResult[];
    histories: Array<{ concurrency: number; instances: number; attach?: HistorySummary; detach?: HistorySummary }>;
    skipped?: string;
  };
  /** Nova and tether on the same Cinder and libvirt, alternating rounds (bench/nova.ts). */
  nova?: NovaPartResult;
  /** The dev server and the two-node mTLS cluster, the same cycles in alternating rounds (bench/cluster.ts). */
  cluster?: ClusterPartResult & { run?: { date: string; commit: string; command: string; loadStart: number; loadEnd: number } };
  /** The CLI's start-up beside `node -e 0` (bench/cli.ts). */
  cli?: CliResult;
}

function cell(results: CellResult[], mode: string, c: number, i: number): CellResult | undefined {
  return results.find((r) => r.mode === mode && r.concurrency === c && r.instances === i);
}

export function matrixTable(r: BenchResults): string {
  const lines: string[] = [];
  lines.push('| instances | concurrency | Temporal p50 / p95 / p99 (ms) | Temporal cycles/s | direct p50 / p95 / p99 (ms) | direct cycles/s | latency ratio (p50) | throughput ratio | CPU ms per cycle Temporal / direct | other load (cores) |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const keys = [...new Set(r.matrix.map((m) => `${m.instances}/${m.concurrency}`))];
  for (const k of keys) {
    const [i, c] = k.split('/').map(Number) as [number, number];
    const t = cell(r.matrix, 'temporal', c, i);
    const d = cell(r.matrix, 'direct', c, i);
    const l = (x?: CellResult) => (x ? `${x.cycle.p50} / ${x.cycle.p95} / ${x.cycle.p99}` : '—');
    const other = [t, d].filter(Boolean).map((x) => x!.machine.otherCores).join(' / ');
    lines.push(
      `| ${i} | ${c} | ${l(t)} | ${t?.throughput ?? '—'} | ${l(d)} | ${d?.throughput ?? '—'} | ${t && d ? `${ratio(t.cycle.p50, d.cycle.p50)}×` : '—'} | ${t && d ? `${ratio(d.throughput, t.throughput)}× fewer` : '—'} | ${t?.cpuMsPerCycle.total ?? '—'} / ${d?.cpuMsPerCycle.total ?? '—'} | ${other} |`,
    );
  }
  return lines.join('\n');
}

/** Nova's column beside tether's: latency percentiles, throughput and CPU per cycle, per concurrency. */
export function novaTable(part: NovaPartResult): string {
  const lines: string[] = [];
  lines.push('| clients | system | attach p50 / p95 / p99 (ms) | detach p50 / p95 / p99 (ms) | API answer p50 (ms) | cycles/s | CPU ms per cycle: own + shared | errors | other load (cores) |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  const p = (s: CellResult['attach']) => `${s.p50} / ${s.p95} / ${s.p99}`;
  for (const c of [...new Set(part.cells.map((x) => x.concurrency))]) {
    for (const mode of ['nova', 'tether']) {
      const x = part.cells.find((m) => m.mode === mode && m.concurrency === c);
      if (!x) continue;
      lines.push(`| ${c} | ${mode === 'nova' ? `Nova ${part.nova.split(':').pop()}` : 'tether'} | ${p(x.attach)} | ${p(x.detach)} | ${x.reservation.p50} | ${x.throughput} | ${ownCpu(part, x)} + ${sharedCpu(part, x)} | ${x.errors} | ${x.machine.otherCores} |`);
    }
  }
  lines.push('');
  for (const c of [...new Set(part.cells.map((x) => x.concurrency))]) {
    const n = part.cells.find((m) => m.mode === 'nova' && m.concurrency === c);
    const t = part.cells.find((m) => m.mode === 'tether' && m.concurrency === c);
    if (!n || !t) continue;
    lines.push(
      `- ${c} client${c > 1 ? 's' : ''}: tether's attach p50 is ${ratio(t.attach.p50, n.attach.p50)}× Nova's, its detach p50 ${ratio(t.detach.p50, n.detach.p50)}×, ` +
        `its throughput ${ratio(t.throughput, n.throughput)}× Nova's, its own CPU per cycle ${ratio(ownCpu(part, t), ownCpu(part, n))}× Nova's.`,
    );
  }
  return lines.join('\n');
}

function novaSection(r: BenchResults): string[] {
  const part = r.nova;
  if (!part) return [];
  if (part.skipped) return ['## Nova and tether, side by side', '', `Skipped: ${part.skipped}`, ''];
  return [
    '## Nova and tether, side by side',
    '',
    `Nova ${part.nova} (Debian's packages) and tether on one Cinder (loop devices) and one libvirt, ${part.instances} servers each, ` +
      `in alternating rounds; both driven over HTTP the same way (attach done: Cinder says in-use; detach done: Cinder says available and the API no longer shows the attachment; polled every ${part.pollMs} ms). ` +
      `Own CPU: Nova's daemons and Placement, or tether's API server, control-plane worker, compute agent, Temporal dev server and PostgreSQL; shared: Cinder, libvirtd, virtlogd, the QEMU domains and the load driver.`,
    '',
    novaTable(part),
    '',
    '![Nova and tether: cycle latency](nova-vs-tether.svg)',
    '',
  ];
}

export function splitTable(r: BenchResults): string {
  const lines: string[] = [];
  lines.push('| instances | concurrency | mode | reservation p50 (API answer) | of which update-with-start p50 | attach p50 | detach p50 | errors |');
  lines.push('|---:|---:|---|---:|---:|---:|---:|---:|');
  for (const m of r.matrix) lines.push(`| ${m.instances} | ${m.concurrency} | ${m.mode} | ${m.reservation.p50} | ${m.updateWithStart?.p50 ?? '—'} | ${m.attach.p50} | ${m.detach.p50} | ${m.errors} |`);
  return lines.join('\n');
}

/**
 * The issue's target, per cell: the orchestration overhead of an attach (Temporal attach p50 − direct
 * attach p50, both measured side by side in the same run) next to the work itself (the direct attach
 * p50: the same steps against the same stores, without Temporal). Same for detach.
 */
export function overheadTable(rows: Array<{ label: string; temporal?: CellResult; direct?: CellResult }>): string {
  const lines: string[] = [];
  lines.push('| block storage | instances | concurrency | attach p50 Temporal | work (attach p50 direct) | overhead per attach | overhead / work | detach p50 Temporal / direct | detach overhead / work |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const { label, temporal: t, direct: d } of rows) {
    if (!t || !d) continue;
    const over = roundTo(t.attach.p50 - d.attach.p50);
    const dOver = roundTo(t.detach.p50 - d.detach.p50);
    lines.push(
      `| ${label} | ${t.instances} | ${t.concurrency} | ${t.attach.p50} | ${d.attach.p50} | ${over} | ${ratio(over, d.attach.p50)}× | ${t.detach.p50} / ${d.detach.p50} | ${ratio(dOver, d.detach.p50)}× |`,
    );
  }
  return lines.join('\n');
}

/** What Temporal and the SDK cost by themselves for a saga of tether's shape on this machine. */
export function floorLine(f: FloorResult | undefined): string {
  if (!f) return '(floor not measured)';
  return (
    `Floor on this machine (bench/floor.ts, ${f.runs} sequential runs): a workflow of the attach's shape whose steps do nothing ` +
    `(2 local activities, a host activity on another queue, 2 local activities, a host activity, 2 local activities) takes ` +
    `p50 ${f.attachShaped.p50} ms from start to result; of the detach's shape ${f.detachShaped.p50} ms; an empty workflow ${f.empty.p50} ms. ` +
    'That much of the overhead above is Temporal\'s and the TypeScript SDK\'s for a saga of this shape, whatever the steps do.' +
    (f.allLocal ? ` The attach's eight steps as local activities in one workflow task (the floor of any design on Temporal, host steps included) take ${f.allLocal.p50} ms.` : '')
  );
}

/** Pairs of (Temporal, direct) cells for overheadTable: the matrix at concurrency 1 and every Cinder cell. */
export function overheadRows(r: BenchResults): Array<{ label: string; temporal?: CellResult; direct?: CellResult }> {
  const rows: Array<{ label: string; temporal?: CellResult; direct?: CellResult }> = [];
  for (const t of r.matrix.filter((m) => m.mode === 'temporal' && m.concurrency === 1)) {
    rows.push({ label: 'embedded volume service', temporal: t, direct: cell(r.matrix, 'direct', t.concurrency, t.instances) });
  }
  for (const t of (r.cinder?.cells ?? []).filter((m) => m.mode === 'temporal')) {
    rows.push({ label: `Cinder (${r.cinder!.mode}, ${r.cinder!.driver} driver)`, temporal: t, direct: cell(r.cinder!.cells, 'direct', t.concurrency, t.instances) });
  }
  return rows;
}

/** CPU ms per cycle, by process, for every cell of one instance count (Temporal and direct). */
export function cpuTable(r: BenchResults, instances: number): string {
  const cells = r.matrix.filter((m) => m.instances === instances);
  if (cells.length === 0) return '(no cells)';
  const groups = [...new Set(cells.flatMap((c) => Object.keys(c.cpuMsPerCycle.byGroup)))];
  const head = cells.map((c) => `${c.mode} c=${c.concurrency}`);
  const lines = [`| CPU ms per cycle (${instances} instances) | ${head.join(' | ')} |`, `|---|${head.map(() => '---:').join('|')}|`];
  for (const g of groups) lines.push(`| ${g} | ${cells.map((c) => c.cpuMsPerCycle.byGroup[g] ?? 0).join(' | ')} |`);
  lines.push(`| total | ${cells.map((c) => c.cpuMsPerCycle.total).join(' | ')} |`);
  return lines.join('\n');
}

export function historyTable(h: HistorySummary | undefined, directSteps?: Record<string, number>): string {
  if (!h) return '(no histories)';
  const lines: string[] = [];
  lines.push(`${h.workflowType}: ${h.runs} runs, duration p50 ${h.durationP50Ms} ms, ${h.eventsP50} history events (${h.workflowTasksP50} workflow tasks, ${h.localActivitiesP50} local-activity markers)`);
  lines.push('');
  lines.push('| where the run waited | p50 ms |');
  lines.push('|---|---:|');
  for (const [k, v] of Object.entries(h.partsP50).sort((a, b) => b[1] - a[1])) lines.push(`| ${k} | ${v} |`);
  lines.push('');
  lines.push('| activity | queue | schedule-to-start p50 ms | started-to-completed p50 ms | same step called directly p50 ms |');
  lines.push('|---|---|---:|---:|---:|');
  for (const [k, v] of Object.entries(h.activities)) {
    lines.push(`| ${k} | ${v.queue} | ${v.scheduleToStartP50} | ${v.executionP50} | ${directSteps?.[k] ?? directSteps?.[k === 'validateAttach' ? 'validate' : k] ?? '—'} |`);
  }
  return lines.join('\n');
}

export function resourcesTable(rows: Array<GroupSample & { cpuCores: number }>, title: string): string {
  const lines = [`| ${title} | processes | RSS MB | PSS MB | CPU (cores) |`, '|---|---:|---:|---:|---:|'];
  for (const g of rows) lines.push(`| ${g.name} | ${g.processes} | ${g.rssMb} | ${g.pssMb} | ${g.cpuCores} |`);
  const tot = rows.reduce((a, g) => ({ rss: a.rss + g.rssMb, pss: a.pss + g.pssMb, cpu: a.cpu + g.cpuCores }), { rss: 0, pss: 0, cpu: 0 });
  lines.push(`| total | | ${Math.round(tot.rss)} | ${Math.round(tot.pss)} | ${Math.round(tot.cpu * 100) / 100} |`);
  return lines.join('\n');
}

export function scaleTable(s: ScaleResult | undefined): string {
  if (!s) return '(not run)';
  const lines = [
    '| instances on the agent | agent RSS MB | agent heap MB | agent idle CPU % | dev server RSS MB | dev server idle CPU % | poll RPCs received in 10 s (activity / workflow) | long polls open (activity / workflow) | all queues serving after (ms) | row → first activity on a new queue p50 (ms) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of s.points) {
    const polls = `${p.pollRpcsIn10s.PollActivityTaskQueue ?? 0} / ${p.pollRpcsIn10s.PollWorkflowTaskQueue ?? 0}`;
    const open = `${p.pendingPolls?.PollActivityTaskQueue ?? 0} / ${p.pendingPolls?.PollWorkflowTaskQueue ?? 0}`;
    lines.push(`| ${p.instances} | ${p.agentRssMb} | ${p.agentHeapMb} | ${p.agentIdleCpuPct} | ${p.devServerRssMb} | ${p.devServerIdleCpuPct} | ${polls} | ${open} | ${p.allServingMs} | ${p.timeToServeMs} (${p.timeToServeSamples.join(', ')}) |`);
  }
  return lines.join('\n');
}

/** The agent's variants beside the shipped agent at the same size (same run, one agent after the other). */
export function scaleVariantsTable(r: BenchResults): string {
  if (!r.scale || !r.scaleVariants?.length) return '';
  const lines = [
    '| agent | instances | agent RSS MB | agent heap MB | agent idle CPU % | all queues serving after (ms) | row → first activity p50 (ms) | burst: one host step on every queue, drained in (ms) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const row = (name: string, p: ScaleResult['points'][number]) =>
    `| ${name} | ${p.instances} | ${p.agentRssMb} | ${p.agentHeapMb} | ${p.agentIdleCpuPct} | ${p.allServingMs} | ${p.timeToServeMs} | ${p.drain ? `${p.drain.ms}${p.drain.errors ? ` (${p.drain.errors} errors)` : ''}` : '—'} |`;
  for (const v of r.scaleVariants) {
    const p = v.points.at(-1);
    const shipped = p && r.scale.points.find((x) => x.instances === p.instances);
    if (!p || !shipped) continue;
    lines.push(row('shipped', shipped), row(`${v.variant?.name}: ${v.variant?.description}`, p));
  }
  return lines.join('\n');
}

export function neighboursTable(r: BenchResults): string {
  const n = r.neighbours;
  if (!n) return '(not run)';
  const lines = [
    `Background: ${n.background.concurrency} clients cycling over ${n.background.instances} other instances of the same host (${n.background.throughput} cycles/s).`,
    '',
    '| mode | quiet host: cycle p50 / p95 (ms) | busy host: cycle p50 / p95 (ms) | slowdown (p50) |',
    '|---|---:|---:|---:|',
  ];
  for (const mode of Object.keys(n.quiet)) {
    const q = n.quiet[mode]!;
    const b = n.busy[mode];
    lines.push(`| ${mode} | ${q.cycle.p50} / ${q.cycle.p95} | ${b ? `${b.cycle.p50} / ${b.cycle.p95}` : '—'} | ${b ? `${ratio(b.cycle.p50, q.cycle.p50)}×` : '—'} |`);
  }
  return lines.join('\n');
}

/** Pools the interleaved rounds of one side: cycle latency from all samples, throughput and CPU from the sums. */
export function pooled(cells: CellResult[]) {
  const samples = cells.flatMap((c) => c.samples);
  const cycles = cells.reduce((a, c) => a + c.cycles, 0);
  const wall = cells.reduce((a, c) => a + c.wallMs, 0);
  const cpu = cells.reduce((a, c) => a + c.cpuMsPerCycle.total * c.cycles, 0);
  const s = rounded(summarize(samples));
  return { cycles, p50: s.p50, p95: s.p95, throughput: wall ? Math.round((cycles / (wall / 1000)) * 100) / 100 : Number.NaN, cpuMsPerCycle: cycles ? Math.round(cpu / cycles) : Number.NaN, otherCores: Math.round((cells.reduce((a, c) => a + c.machine.otherCores, 0) / Math.max(1, cells.length)) * 100) / 100 };
}

export function variantsTable(r: BenchResults): string {
  if (r.variants.length === 0) return '(not run)';
  const lines = [
    '| variant | instances | concurrency | cycles before / after | p50 before → after (ms) | p95 before → after (ms) | cycles/s before → after | CPU ms per cycle before → after | other load (cores) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const pct = (a: number, b: number) => `${a > b ? '+' : ''}${Math.round((a / b - 1) * 100)}%`;
  for (const v of r.variants) {
    for (const c of v.cells) {
      const b = pooled(c.before);
      const a = pooled(c.after);
      lines.push(
        `| ${v.name} | ${c.instances} | ${c.concurrency} | ${b.cycles} / ${a.cycles} | ${b.p50} → ${a.p50} (${pct(a.p50, b.p50)}) | ${b.p95} → ${a.p95} | ${b.throughput} → ${a.throughput} (${pct(a.throughput, b.throughput)}) | ${b.cpuMsPerCycle} → ${a.cpuMsPerCycle} (${pct(a.cpuMsPerCycle, b.cpuMsPerCycle)}) | ${b.otherCores} / ${a.otherCores} |`,
      );
    }
  }
  return lines.join('\n');
}

export function markdown(r: BenchResults): string {
  const out: string[] = [];
  out.push(`# Benchmark results (${String(r.meta.profile)} run, ${String(r.meta.date)})`);
  out.push('');
  out.push('Generated by `npm run bench`; see README.md in this folder for what is measured and what it means.');
  out.push('');
  out.push('```');
  out.push(JSON.stringify(r.meta, null, 1));
  out.push('```');
  out.push('');
  out.push('## Targets (issue 19)', '', targetsTable(r), '');
  out.push(...novaSection(r));
  if (r.cluster) out.push('## The dev server and the Temporal cluster, side by side (bench/cluster.ts)', '', `${r.cluster.topology}; cluster stack up in ${roundTo(r.cluster.startMs / 1000, 1)} s.`, '', clusterTable(r.cluster), '');
  if (r.cli) out.push('## The CLI\'s start-up (bench/cli.ts)', '', cliTable(r.cli), '');
  out.push('## Orchestration overhead per attach vs the work itself');
  out.push('');
  out.push(overheadTable(overheadRows(r)));
  out.push('');
  out.push(floorLine(r.floor));
  out.push('');
  if (r.cinder?.skipped) out.push(`Cinder part skipped: ${r.cinder.skipped}`);
  out.push('');
  out.push('## Attach+detach cycles: Temporal vs direct');
  out.push('');
  out.push(matrixTable(r));
  out.push('');
  out.push(splitTable(r));
  out.push('');
  if (r.cinder && r.cinder.cells.length) {
    out.push('## Against a real Cinder');
    out.push('');
    out.push(`Cinder ${r.cinder.mode} mode, ${r.cinder.driver} driver; ${r.cinder.instances} instances.`);
    out.push('');
    out.push(matrixTable({ ...r, matrix: r.cinder.cells }));
    out.push('');
    out.push(splitTable({ ...r, matrix: r.cinder.cells }));
    for (const h of r.cinder.histories) {
      const direct = cell(r.cinder.cells, 'direct', h.concurrency, h.instances)?.stepsP50;
      out.push('');
      out.push(`### Cinder: ${h.instances} instance(s), concurrency ${h.concurrency}`);
      out.push('');
      out.push(historyTable(h.attach, direct));
      out.push('');
      out.push(historyTable(h.detach, direct));
    }
    out.push('');
  }
  out.push('## Where the CPU goes');
  for (const i of [...new Set(r.matrix.map((m) => m.instances))]) {
    out.push('');
    out.push(cpuTable(r, i));
  }
  out.push('');
  out.push('## Where the time goes (history of attach/detach runs)');
  for (const h of r.histories) {
    const direct = cell(r.matrix, 'direct', h.concurrency, h.instances)?.stepsP50;
    out.push('');
    out.push(`### ${h.instances} instance(s), concurrency ${h.concurrency}`);
    out.push('');
    out.push(historyTable(h.attach, direct));
    out.push('');
    out.push(historyTable(h.detach, direct));
  }
  out.push('');
  out.push('## Attach on one instance while other instances of the host are busy');
  out.push('');
  out.push(neighboursTable(r));
  out.push('');
  out.push('## Per-instance task queues at scale (one compute agent)');
  out.push('');
  out.push(scaleTable(r.scale));
  if (r.scaleVariants?.length) out.push('', 'The agent process changed (A/B, same run):', '', scaleVariantsTable(r));
  out.push('');
  out.push('## Resources of the stack');
  out.push('');
  out.push(resourcesTable(r.rest.resources, 'at rest (10 s)'));
  const heavy = [...r.matrix].filter((m) => m.mode === 'temporal').sort((a, b) => b.concurrency * 1000 + b.instances - (a.concurrency * 1000 + a.instances))[0];
  if (heavy) {
    out.push('');
    out.push(resourcesTable(heavy.resources, `under load (Temporal, ${heavy.instances} instances, concurrency ${heavy.concurrency}; peak RSS, average CPU)`));
  }
  const heavyDirect = heavy && cell(r.matrix, 'direct', heavy.concurrency, heavy.instances);
  if (heavyDirect) {
    out.push('');
    out.push(resourcesTable(heavyDirect.resources, `under load (direct, ${heavyDirect.instances} instances, concurrency ${heavyDirect.concurrency})`));
  }
  out.push('');
  out.push('## Candidate optimizations (A/B, interleaved rounds)');
  out.push('');
  out.push(variantsTable(r));
  for (const v of r.variants) {
    out.push('');
    out.push(`### ${v.name}: ${v.description}`);
    out.push('');
    out.push('Before:');
    out.push('');
    out.push(historyTable(v.historyBefore?.attach));
    out.push('');
    out.push(historyTable(v.historyBefore?.detach));
    out.push('');
    out.push('After:');
    out.push('');
    out.push(historyTable(v.historyAfter?.attach));
    out.push('');
    out.push(historyTable(v.historyAfter?.detach));
  }
  out.push('');
  return out.join('\n');
}

/** The charts (file name → SVG) of a results object; writeCharts writes them into a folder. */
export function renderCharts(r: BenchResults): Record<string, string> {
  const charts: Record<string, string> = {};
  const write = (name: string, svg: string) => {
    charts[name] = svg;
  };
  // 1. latency distribution (CDF) per mode and concurrency, at the middle instance count
  const counts = [...new Set(r.matrix.map((m) => m.instances))].sort((a, b) => a - b);
  const mid = counts[Math.floor(counts.length / 2)] ?? 1;
  const cdfSeries: LineSeries[] = [];
  const concs = [...new Set(r.matrix.map((m) => m.concurrency))].sort((a, b) => a - b);
  concs.forEach((c, k) => {
    for (const mode of ['temporal', 'direct']) {
      const x = cell(r.matrix, mode, c, mid);
      if (x) cdfSeries.push({ label: `${mode}, concurrency ${c}`, points: cdfPoints(x.samples), dashed: mode === 'direct', color: color(k) });
    }
  });
  const allLat = cdfSeries.flatMap((s) => s.points.map((p) => p.x));
  if (allLat.length) {
    write(
      'latency-cdf.svg',
      lineChart({
        title: `Attach+detach cycle latency, ${mid} instances (CDF)`,
        note: 'solid: through Temporal; dashed: the same activities called directly',
        x: axis(allLat, { log: true, label: 'cycle latency (ms, log scale)' }),
        y: axis([0, 100], { label: '% of cycles at or below', ticks: [0, 25, 50, 75, 90, 100], min: 0, max: 100 }),
        series: cdfSeries,
      }),
    );
  }
  // 2. throughput vs concurrency
  const tpSeries: LineSeries[] = [];
  counts.forEach((i, k) => {
    for (const mode of ['temporal', 'direct']) {
      const pts = concs.map((c) => ({ x: c, y: cell(r.matrix, mode, c, i)?.throughput ?? Number.NaN }));
      tpSeries.push({ label: `${mode}, ${i} instance${i > 1 ? 's' : ''}`, points: pts, dashed: mode === 'direct', color: color(k), markers: true });
    }
  });
  const tps = tpSeries.flatMap((s) => s.points.map((p) => p.y));
  if (tps.some(Number.isFinite)) {
    write(
      'throughput.svg',
      lineChart({
        title: 'Throughput vs concurrency (attach+detach cycles per second)',
        note: 'solid: through Temporal; dashed: direct calls (no durability)',
        x: axis(concs, { log: true, label: 'concurrent clients (log scale)', ticks: concs, min: Math.min(...concs) / 1.2, max: Math.max(...concs) * 1.2 }),
        y: axis(tps, { label: 'cycles per second' }),
        series: tpSeries,
      }),
    );
  }
  // 3. where the time of one attach and one detach goes (c=1, fewest instances), and the variants
  const bars: Bar[] = [];
  const h0 = r.histories[0];
  const toBar = (label: string, h?: HistorySummary) => {
    if (!h) return;
    bars.push({ label, segments: Object.entries(h.partsP50).filter(([, v]) => v > 0.5).map(([k, v]) => ({ label: k, value: v })) });
  };
  if (h0) {
    toBar(`attach, shipped (${h0.instances} inst.)`, h0.attach);
    toBar(`detach, shipped (${h0.instances} inst.)`, h0.detach);
  }
  for (const v of r.variants) {
    // before and after from the same interleaved rounds (same machine load)
    toBar(`attach, shipped (A/B)`, v.historyBefore?.attach);
    toBar(`attach, ${v.name}`, v.historyAfter?.attach);
    toBar(`detach, shipped (A/B)`, v.historyBefore?.detach);
    toBar(`detach, ${v.name}`, v.historyAfter?.detach);
  }
  if (bars.length) write('time-breakdown.svg', stackedBars({ title: 'Where one run waits (p50 per part, concurrency 1)', unit: 'ms', bars }));
  // 4. Nova beside tether: cycle latency CDF per system and concurrency
  const novaCells = r.nova?.cells ?? [];
  if (novaCells.length) {
    const ncs = [...new Set(novaCells.map((m) => m.concurrency))].sort((a, b) => a - b);
    const series: LineSeries[] = [];
    ncs.forEach((c, k) => {
      for (const mode of ['tether', 'nova']) {
        const x = novaCells.find((m) => m.mode === mode && m.concurrency === c);
        if (x) series.push({ label: `${mode === 'nova' ? 'Nova' : 'tether'}, ${c} client${c > 1 ? 's' : ''}`, points: cdfPoints(x.samples), dashed: mode === 'nova', color: color(k) });
      }
    });
    const xs = series.flatMap((s) => s.points.map((p) => p.x));
    write(
      'nova-vs-tether.svg',
      lineChart({
        title: 'Attach+detach cycle latency: tether and Nova on one Cinder and libvirt (CDF)',
        note: 'solid: tether; dashed: Nova 26 (Debian); alternating rounds, the same client loop',
        x: axis(xs, { log: true, label: 'cycle latency (ms, log scale)' }),
        y: axis([0, 100], { label: '% of cycles at or below', ticks: [0, 25, 50, 75, 90, 100], min: 0, max: 100 }),
        series,
      }),
    );
  }
  return charts;
}

export function writeCharts(r: BenchResults, dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const charts = renderCharts(r);
  for (const [name, svg] of Object.entries(charts)) fs.writeFileSync(path.join(dir, name), svg);
  return Object.keys(charts);
}

export function printSummary(r: BenchResults, log: (s: string) => void): void {
  if (r.cli) for (const line of cliLines(r.cli)) log(line);
  if (r.nova?.skipped) log(`Nova part skipped: ${r.nova.skipped}`);
  if (r.nova?.cells.length) {
    log('');
    log('Nova and tether, side by side (one Cinder, one libvirt, alternating rounds):');
    log(novaTable(r.nova));
  }
  log('');
  log('Orchestration overhead per attach vs the work itself (p50, ms):');
  log(overheadTable(overheadRows(r)));
  log(floorLine(r.floor));
  if (r.cinder?.skipped) log(`Cinder part skipped: ${r.cinder.skipped}`);
  if (r.cinder?.cells.length) {
    log('');
    log('Against a real Cinder:');
    log(matrixTable({ ...r, matrix: r.cinder.cells }));
    log(splitTable({ ...r, matrix: r.cinder.cells }));
  }
  log('');
  log(matrixTable(r));
  log('');
  log(splitTable(r));
  const counts = [...new Set(r.matrix.map((m) => m.instances))];
  if (counts.length) {
    log('');
    log(cpuTable(r, counts[Math.floor(counts.length / 2)]!));
  }
  const h = r.histories[0];
  if (h) {
    log('');
    log(historyTable(h.attach, cell(r.matrix, 'direct', h.concurrency, h.instances)?.stepsP50));
    log('');
    log(historyTable(h.detach, cell(r.matrix, 'direct', h.concurrency, h.instances)?.stepsP50));
  }
  log('');
  log(neighboursTable(r));
  log('');
  log(scaleTable(r.scale));
  if (r.scaleVariants?.length) log(scaleVariantsTable(r));
  log('');
  log(resourcesTable(r.rest.resources, 'at rest'));
  log('');
  log(variantsTable(r));
  log('');
  log('Targets:');
  log(targetsTable(r));
}
