/**
 * The floor: how long a workflow of the attach's (and the detach's) shape takes on this machine when
 * its steps do nothing — the part of the orchestration overhead that belongs to Temporal and the
 * TypeScript SDK (workflow tasks, local-activity round trips, activity dispatch on another queue),
 * whatever tether's steps do. The workers (bench/workflows/floor.ts and a no-op activity on a second
 * queue, one at a time) run in a benchmark child process of their own, the client here, as tether's
 * service layer and workers are laid out; runs are sequential, after 3 warm-up runs.
 */
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { startChild, type BenchStack } from './stack.ts';
import { summarize, rounded, type Summary } from './stats.ts';

export interface FloorResult {
  runs: number;
  empty: Summary;
  attachShaped: Summary;
  detachShaped: Summary;
  /** The attach's eight steps as local activities in one workflow task: the floor of any design on Temporal. */
  allLocal?: Summary;
  /**
   * The floor's throughput: attach-shaped then detach-shaped no-op sagas, cycles as the matrix drives
   * tether's (`concurrency` clients, cycle n on host queue n mod `instances`, each queue one step at a time).
   */
  throughput?: { concurrency: number; instances: number; cycles: number; wallMs: number; cyclesPerSecond: number; cycle: Summary };
}

export async function runFloor(
  stack: Pick<BenchStack, 'id' | 'temporal' | 'databaseUrl' | 'logDir'>,
  client: Client,
  runs: number,
  load?: { concurrency: number; instances: number; cycles: number },
): Promise<FloorResult> {
  const workflowQueue = `bench-floor-${stack.id}`;
  const hostQueue = `bench-floor-host-${stack.id}`;
  const hostQueues = Array.from({ length: load?.instances ?? 0 }, (_, i) => `${hostQueue}-${i}`);
  const child = await startChild(
    { role: 'floor', temporalAddress: stack.temporal.address, namespace: 'default', databaseUrl: stack.databaseUrl, workflowQueue, hostQueue, hostQueues },
    path.join(stack.logDir, 'floor.log'),
  );
  try {
    const measure = async (workflow: string, args: unknown[]): Promise<Summary> => {
      const samples: number[] = [];
      for (let i = 0; i < runs + 3; i++) {
        const t0 = performance.now();
        await client.workflow.execute(workflow, { taskQueue: workflowQueue, workflowId: `floor-${workflow}-${randomUUID()}`, args });
        if (i >= 3) samples.push(performance.now() - t0);
      }
      return rounded(summarize(samples));
    };
    const cycle = async (queue: string) => {
      await client.workflow.execute('attachShapedNoop', { taskQueue: workflowQueue, workflowId: `floor-attach-${randomUUID()}`, args: [queue] });
      await client.workflow.execute('detachShapedNoop', { taskQueue: workflowQueue, workflowId: `floor-detach-${randomUUID()}`, args: [queue] });
    };
    const drive = async (total: number): Promise<{ wallMs: number; samples: number[] }> => {
      let next = 0;
      const samples: number[] = [];
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: load!.concurrency }, async () => {
          while (next < total) {
            const n = next++;
            const t1 = performance.now();
            await cycle(hostQueues[n % hostQueues.length]!);
            samples.push(performance.now() - t1);
          }
        }),
      );
      return { wallMs: performance.now() - t0, samples };
    };
    const result: FloorResult = {
      runs,
      empty: await measure('emptyNoop', []),
      attachShaped: await measure('attachShapedNoop', [hostQueue]),
      detachShaped: await measure('detachShapedNoop', [hostQueue]),
      allLocal: await measure('allLocalNoop', []),
    };
    if (load) {
      await drive(load.concurrency); // warm-up: every client once
      const { wallMs, samples } = await drive(load.cycles);
      result.throughput = {
        ...load,
        wallMs: Math.round(wallMs),
        cyclesPerSecond: Math.round((load.cycles / (wallMs / 1000)) * 100) / 100,
        cycle: rounded(summarize(samples)),
      };
    }
    return result;
  } finally {
    await child.stop();
  }
}
