/**
 * The cluster part: the same attach+detach cycles against the dev server and against the two-node
 * Temporal cluster on PostgreSQL with mTLS (the production topology, stack/temporal-cluster.ts), side
 * by side in one run. A second bench stack is started on the cluster next to the run's dev-server
 * stack; each cell is measured in alternating rounds (dev, cluster, cluster, dev, …) so a drift of the
 * shared machine falls on both alike, and each side's CPU is counted on its own processes only.
 */
import type { Instance, Volume } from '../src/domain/types.ts';
import { temporalCycle } from './direct-baseline.ts';
import { runInterleaved, type CycleFn } from './load.ts';
import { startBenchStack, type BenchStack } from './stack.ts';
import type { ClusterCellSpec, ClusterPartResult } from './cluster-report.ts';

export interface ClusterPartOptions {
  cells: ClusterCellSpec[];
  rounds: number;
  runningDomains: boolean;
  log: (line: string) => void;
}

/** The cycle of one stack, driven with the other stack's instance and volume lists (same index). */
function cycleOn(target: BenchStack, source: { instances: Instance[]; volumes: Volume[] }): CycleFn {
  return (instance, volume) => {
    const i = source.instances.indexOf(instance);
    const v = source.volumes.indexOf(volume);
    if (i < 0 || v < 0) throw new Error('cluster part: an instance or volume outside the cell');
    return temporalCycle(target.service, target.instances[i]!, target.volumes[v]!);
  };
}

export async function runClusterPart(dev: BenchStack, o: ClusterPartOptions): Promise<ClusterPartResult> {
  const t0 = performance.now();
  o.log('cluster part: starting a second stack on the two-node Temporal cluster (PostgreSQL, mTLS)');
  const cluster = await startBenchStack({ runningDomains: o.runningDomains, log: o.log, temporal: 'cluster' });
  const startMs = Math.round(performance.now() - t0);
  o.log(`cluster part: cluster stack up in ${(startMs / 1000).toFixed(1)} s (frontends ${cluster.temporal.address})`);
  try {
    const maxInstances = Math.max(...o.cells.map((c) => c.instances));
    const maxClients = Math.max(...o.cells.map((c) => c.concurrency));
    await Promise.all([dev.ensureInstances(maxInstances), cluster.ensureInstances(maxInstances)]);
    await Promise.all([dev.ensureVolumes(maxClients), cluster.ensureVolumes(maxClients)]);
    const cells: ClusterPartResult['cells'] = [];
    for (const c of o.cells) {
      const spec = { concurrency: c.concurrency, instances: dev.instances.slice(0, c.instances), volumes: dev.volumes.slice(0, c.concurrency), cycles: c.cycles };
      const modes: Array<[string, CycleFn]> = [
        ['dev server', cycleOn(dev, dev)],
        ['cluster', cycleOn(cluster, dev)],
      ];
      const [devCell, clusterCell] = await runInterleaved(spec, modes, o.rounds, (mode) => (mode === 'cluster' ? cluster : dev).procGroups());
      cells.push({ concurrency: c.concurrency, instances: c.instances, dev: devCell!, cluster: clusterCell! });
      o.log(
        `cluster part: ${c.instances} inst. × ${c.concurrency} clients: attach p50 dev ${devCell!.attach.p50} ms / cluster ${clusterCell!.attach.p50} ms, ` +
          `${devCell!.throughput} / ${clusterCell!.throughput} cycles/s, errors ${devCell!.errors} / ${clusterCell!.errors}`,
      );
    }
    return {
      topology: 'two Temporal server v1.29.1 nodes on the stack\'s embedded PostgreSQL, mTLS between every process and the frontends, the workers dialing through the product\'s frontend relay',
      startMs,
      rounds: o.rounds,
      cells,
    };
  } finally {
    await cluster.cleanup();
  }
}
