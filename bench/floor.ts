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
}

export async function runFloor(stack: Pick<BenchStack, 'id' | 'temporal' | 'databaseUrl' | 'logDir'>, client: Client, runs: number): Promise<FloorResult> {
  const workflowQueue = `bench-floor-${stack.id}`;
  const hostQueue = `bench-floor-host-${stack.id}`;
  const child = await startChild(
    { role: 'floor', temporalAddress: stack.temporal.address, namespace: 'default', databaseUrl: stack.databaseUrl, workflowQueue, hostQueue },
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
    return {
      runs,
      empty: await measure('emptyNoop', []),
      attachShaped: await measure('attachShapedNoop', [hostQueue]),
      detachShaped: await measure('detachShapedNoop', [hostQueue]),
      allLocal: await measure('allLocalNoop', []),
    };
  } finally {
    await child.stop();
  }
}
