/**
 * What the cluster part (bench/cluster.ts) records, and its side-by-side table: kept apart from the
 * part itself so that the docs generator reads results without loading the stack.
 */
import type { CellResult } from './load.ts';

export interface ClusterCellSpec {
  concurrency: number;
  instances: number;
  cycles: number;
}

export interface ClusterPartResult {
  /** How the cluster stack was made, for the reader of the JSON. */
  topology: string;
  /** Wall time to bring the cluster stack up (schema, two nodes, namespace, workers). */
  startMs: number;
  rounds: number;
  cells: Array<{ concurrency: number; instances: number; dev: CellResult; cluster: CellResult }>;
}

/** The side-by-side table (README's bench-cluster region and docs/bench/results.md). */
export function clusterTable(part: ClusterPartResult): string {
  const lines = [
    '| cell | attach p50 (dev → cluster) | detach p50 | cycle p99 | cycles/s | CPU ms per cycle | errors |',
    '|---|---|---|---|---|---|---|',
  ];
  const pair = (a: number, b: number, unit = '') => `${a}${unit} → ${b}${unit} (${a > 0 ? (b / a).toFixed(2) : '–'}×)`;
  for (const c of part.cells) {
    lines.push(
      `| ${c.instances} inst. × ${c.concurrency} client${c.concurrency > 1 ? 's' : ''} | ${pair(c.dev.attach.p50, c.cluster.attach.p50, ' ms')} | ${pair(c.dev.detach.p50, c.cluster.detach.p50, ' ms')} | ` +
        `${pair(c.dev.cycle.p99, c.cluster.cycle.p99, ' ms')} | ${pair(c.dev.throughput, c.cluster.throughput)} | ` +
        `${pair(c.dev.cpuMsPerCycle.total, c.cluster.cpuMsPerCycle.total)} | ${c.dev.errors} / ${c.cluster.errors} |`,
    );
  }
  return lines.join('\n');
}
