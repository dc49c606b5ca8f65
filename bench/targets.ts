/**
 * The targets of the performance issue (round two), each as a figure or a ratio of one benchmark
 * run (docs/bench/latest.json): met, not met, or not measured (and what would measure it). Rendered
 * into docs/bench/results.md, docs/bench/README.md (region bench-targets) and printed by `npm run bench`.
 */
import type { CellResult } from './load.ts';
import type { BenchResults } from './report.ts';
import type { ScaleSimResults } from './scale-sim-report.ts';
import { ratio, roundTo } from './stats.ts';

export interface TargetRow {
  target: string;
  figure: string;
  status: 'met' | 'not met' | 'not measured';
}

function cell(cells: CellResult[], mode: string, concurrency: number, instances: number): CellResult | undefined {
  return cells.find((c) => c.mode === mode && c.concurrency === concurrency && c.instances === instances);
}

const status = (ok: boolean | undefined): TargetRow['status'] => (ok === undefined ? 'not measured' : ok ? 'met' : 'not met');
const notMeasured = (target: string, why: string): TargetRow => ({ target, figure: why, status: 'not measured' });

/** `sim`: the scale simulation's results (docs/scale.json), whose attach burst runs the real sagas on 1000 instance queues. */
export function targetRows(r: BenchResults, sim?: ScaleSimResults): TargetRow[] {
  const rows: TargetRow[] = [];
  const ones = [...new Set(r.matrix.filter((m) => m.concurrency === 1).map((m) => m.instances))].sort((a, b) => a - b);
  const pairs = ones.map((i) => ({ i, t: cell(r.matrix, 'temporal', 1, i), d: cell(r.matrix, 'direct', 1, i) })).filter((p) => p.t && p.d);

  // 1. tether's own overhead above the floor of its shape, attach and detach
  for (const kind of ['attach', 'detach'] as const) {
    const target = `tether's own ${kind} overhead above the no-op floor of its shape ≤ 15 ms p50 (1 client)`;
    const floor = kind === 'attach' ? r.floor?.attachShaped.p50 : r.floor?.detachShaped.p50;
    if (!pairs.length || floor === undefined) {
      rows.push(notMeasured(target, 'needs the matrix and the floor parts'));
      continue;
    }
    const own = pairs.map((p) => ({ i: p.i, ms: roundTo(p.t![kind].p50 - p.d![kind].p50 - floor, 1) }));
    const worst = Math.max(...own.map((o) => o.ms));
    rows.push({
      target,
      figure: `${own.map((o) => `${o.ms} ms (${o.i} inst.)`).join(', ')}: Temporal − direct − floor ${floor} ms`,
      status: status(worst <= 15),
    });
  }

  // 2. attach p50 with the embedded volume service
  {
    const target = 'attach p50 ≤ 80 ms, embedded volume service (1 client)';
    const t = pairs.map((p) => ({ i: p.i, ms: p.t!.attach.p50 }));
    rows.push(t.length ? { target, figure: t.map((x) => `${x.ms} ms (${x.i} inst.)`).join(', '), status: status(Math.max(...t.map((x) => x.ms)) <= 80) } : notMeasured(target, 'needs the matrix part'));
  }

  // 3. the API's answer to POST attach, and what of it is update-with-start
  {
    const target = "the API's answer to POST attach p50 ≤ 35 ms (service layer, 1 client)";
    const t = pairs.map((p) => ({ i: p.i, ms: p.t!.reservation.p50, uws: p.t!.updateWithStart?.p50 }));
    rows.push(
      t.length
        ? {
            target,
            figure: t
              .map((x) => `${x.ms} ms (${x.i} inst.${x.uws !== undefined ? `: update-with-start ${x.uws}, tether ${roundTo(x.ms - x.uws, 1)}` : ''})`)
              .join(', '),
            status: status(Math.max(...t.map((x) => x.ms)) <= 35),
          }
        : notMeasured(target, 'needs the matrix part'),
    );
  }

  // 4. throughput, CPU and p99 at 8 instances × 8 clients
  const t8 = cell(r.matrix, 'temporal', 8, 8);
  const d8 = cell(r.matrix, 'direct', 8, 8);
  if (t8) {
    rows.push({
      target: '≥ 16 attach+detach cycles/s at 8 instances × 8 clients, and ≥ 0.5× direct',
      figure: `${t8.throughput} cycles/s${d8 ? `, ${ratio(t8.throughput, d8.throughput)}× direct (${d8.throughput})` : ''}`,
      status: status(t8.throughput >= 16 && (d8 ? t8.throughput / d8.throughput >= 0.5 : true)),
    });
    rows.push({ target: 'CPU per cycle ≤ 100 ms (8 × 8)', figure: `${t8.cpuMsPerCycle.total} ms${d8 ? ` (direct ${d8.cpuMsPerCycle.total})` : ''}`, status: status(t8.cpuMsPerCycle.total <= 100) });
    rows.push({ target: 'attach p99 ≤ 400 ms at 8 clients (8 instances)', figure: `${t8.attach.p99} ms`, status: status(t8.attach.p99 <= 400) });
  } else {
    rows.push(notMeasured('≥ 16 cycles/s at 8 × 8, ≥ 0.5× direct; CPU per cycle ≤ 100 ms; attach p99 ≤ 400 ms', 'needs the matrix cell 8 instances × 8 clients'));
  }

  // 5. the floor's own throughput at 8 × 8, tether ≥ 0.8× of it
  {
    const target = "the no-op floor's throughput at 8 × 8 measured, tether ≥ 0.8× of it";
    const ft = r.floor?.throughput;
    rows.push(
      ft && t8
        ? { target, figure: `floor ${ft.cyclesPerSecond} cycles/s, tether ${t8.throughput}: ${ratio(t8.throughput, ft.cyclesPerSecond)}×`, status: status(t8.throughput / ft.cyclesPerSecond >= 0.8) }
        : notMeasured(target, ft ? `floor ${ft.cyclesPerSecond} cycles/s; tether's 8 × 8 cell not in this run` : 'needs the floor part with its throughput (bench/floor.ts) and the matrix'),
    );
  }

  // 6. one agent hosting 1000 instance queues
  const p1000 = r.scale?.points.find((p) => p.instances === 1000);
  rows.push(
    p1000
      ? { target: 'one agent hosting 1000 instance queues < 300 MB RSS', figure: `${p1000.agentRssMb} MB`, status: status(p1000.agentRssMb < 300) }
      : notMeasured('one agent hosting 1000 instance queues < 300 MB RSS', 'needs the scale part at 1000 (--scale=…,1000)'),
  );

  // 7. 1000 attaches to 1000 instances drain
  {
    const target = '1000 attaches to 1000 different instances drain in < 15 s';
    const drain = p1000?.drain;
    const burst = sim?.targets.find((t) => t.attaches && t.attaches.attaches >= 1000);
    const a = burst?.attaches;
    rows.push(
      a
        ? {
            target,
            figure:
              `the real AttachVolume sagas on ${a.instances} instance queues of ${a.hosts} simulated hosts (\`npm run scale\`, docs/scale.json, ${burst!.target}): ` +
              (a.drainedMs === null ? `not drained within ${roundTo((a.timedOutAfterMs ?? 0) / 1000, 0)} s` : `drained in ${roundTo(a.drainedMs / 1000, 1)} s`) +
              ` (${a.succeeded} ok, ${a.failed} failed, load average ${a.loadAverage1m.before} → ${a.loadAverage1m.after})`,
            status: status(a.drainedMs !== null && a.failed === 0 && a.drainedMs < 15_000),
          }
        : drain
        ? {
            target,
            figure: `not real attaches: ${drain.workflows} one-step workflows, one host step on each of ${drain.workflows} instance queues of one agent, drained in ${roundTo(drain.ms / 1000, 1)} s (${drain.errors} errors); real attaches need 1000 domains`,
            status: 'not measured',
          }
        : notMeasured(target, 'needs the scale part at 1000; real attaches would need 1000 QEMU domains'),
    );
  }

  // 8. the CLI's start-up
  if (r.cli) {
    for (const [i, c] of r.cli.commands.entries()) {
      if (i === 0 || c.label.includes('source')) continue;
      const x = r.cli.wallRatio[c.label]!;
      rows.push({
        target: `\`${c.label}\` within ${r.cli.target.wallRatio}× \`node -e 0\` (wall p50, same run) and < ${r.cli.target.rssMb} MB`,
        figure: `${x}× (${c.wallMs.p50} ms vs ${r.cli.commands[0]!.wallMs.p50} ms), peak RSS ${c.rssMb.max} MB`,
        status: status(x <= r.cli.target.wallRatio && c.rssMb.max < r.cli.target.rssMb),
      });
    }
  } else {
    rows.push(notMeasured('the CLI within 5× `node -e 0` and < 60 MB', 'needs the cli part (`npm run bench -- --only=cli`)'));
  }

  // 9. a real Temporal cluster
  const clusterTarget = 'the same benchmark against a real Temporal cluster, side by side with the dev server';
  if (r.cluster?.cells.length) {
    const figure = r.cluster.cells
      .map((c) => `${c.instances} inst. × ${c.concurrency} client${c.concurrency > 1 ? 's' : ''}: attach p50 ${c.dev.attach.p50} → ${c.cluster.attach.p50} ms (${ratio(c.cluster.attach.p50, c.dev.attach.p50)}×), ${c.dev.throughput} → ${c.cluster.throughput} cycles/s, errors ${c.dev.errors} / ${c.cluster.errors}`)
      .join('; ');
    const errors = r.cluster.cells.reduce((n, c) => n + c.cluster.errors, 0);
    rows.push({ target: clusterTarget, figure: `dev server → two-node mTLS cluster, alternating rounds: ${figure}`, status: status(errors === 0) });
  } else {
    rows.push(notMeasured(clusterTarget, 'needs the cluster part (`npm run bench -- --only=cluster`)'));
  }
  return rows;
}

export function targetsTable(r: BenchResults, sim?: ScaleSimResults): string {
  const lines = ['| target | figure (this run) | |', '|---|---|---|'];
  for (const row of targetRows(r, sim)) lines.push(`| ${row.target} | ${row.figure} | ${row.status} |`);
  return lines.join('\n');
}
