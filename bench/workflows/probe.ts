/** Benchmark-only workflow: runs one host activity on an instance's queue (is the queue served yet?). */
import { proxyActivities } from '@temporalio/workflow';
import type { HostActivities } from '../../activities/host.ts';
import { instanceTaskQueue } from '../../src/domain/task-queues.ts';

export async function probeInstanceQueue(instanceUuid: string): Promise<void> {
  const host = proxyActivities<HostActivities>({
    taskQueue: instanceTaskQueue(instanceUuid),
    scheduleToCloseTimeout: '5m',
    startToCloseTimeout: '30s',
    retry: { maximumAttempts: 1 },
  });
  await host.getHostConnector();
}
