/** CreateServer: define and start the instance's domain on its compute host, then mark it active. */
import { proxyActivities } from '@temporalio/workflow';
import type { DatabaseActivities } from '../activities/database.ts';
import type { DomainActivities } from '../activities/host.ts';
import { hostTaskQueue } from '../src/domain/task-queues.ts';

const control = proxyActivities<DatabaseActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', maximumInterval: '20s' },
});

export async function createServer(input: { instanceUuid: string; domainName: string; host: string }): Promise<{ state: string }> {
  const host = proxyActivities<DomainActivities>({
    taskQueue: hostTaskQueue(input.host),
    scheduleToCloseTimeout: '3m',
    startToCloseTimeout: '60s',
    retry: { initialInterval: '1s', maximumInterval: '20s', maximumAttempts: 5 },
  });
  try {
    const result = await host.spawnDomain({ instanceUuid: input.instanceUuid, domainName: input.domainName });
    await control.markInstanceActive({ instanceUuid: input.instanceUuid });
    return result;
  } catch (err) {
    await control.markInstanceError({ instanceUuid: input.instanceUuid });
    throw err;
  }
}
