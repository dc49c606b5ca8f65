/**
 * Several compute agents on one machine, each with its own host name, each serving only its own
 * instances' queues; an instance moved between them with an attach in flight.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeConnection } from '@temporalio/worker';
import type { WorkflowHandle } from '@temporalio/client';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { storesOf, volume } from './support/fixtures.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import { instanceTaskQueue } from '../src/domain/task-queues.ts';
import { inspectInvariants } from '../src/checker/invariants.ts';

let stack: TestStack;
let second: ComputeAgent;
let secondConnection: NativeConnection;
let hostB: string;

beforeAll(async () => {
  stack = await startTestStack();
  hostB = `${stack.host}-b`;
  secondConnection = await NativeConnection.connect({ address: stack.temporalAddress });
  second = new ComputeAgent({
    connection: secondConnection,
    namespace: 'default',
    host: hostB,
    db: stack.db,
    databaseUrl: stack.databaseUrl,
    libvirt: stack.libvirt,
    faults: stack.faults,
  });
  await second.start();
});

afterAll(async () => {
  await second?.stop();
  await secondConnection?.close();
  await stack?.stop();
});

async function server(name: string, host: string) {
  const { instance, handle } = await stack.service.createServer({ name, host });
  await handle.result();
  return instance;
}

/** The worker identity that ran each activity of a workflow run. */
async function identities(handle: WorkflowHandle): Promise<Record<string, string>> {
  const events = (await handle.fetchHistory()).events ?? [];
  const typeById = new Map<string, string>();
  const out: Record<string, string> = {};
  for (const e of events) {
    if (e.activityTaskScheduledEventAttributes) typeById.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType!.name!);
    if (e.activityTaskStartedEventAttributes) {
      const type = typeById.get(String(e.activityTaskStartedEventAttributes.scheduledEventId));
      if (type) out[type] = e.activityTaskStartedEventAttributes.identity!;
    }
  }
  return out;
}

describe('many compute hosts', () => {
  it("each agent serves only its own instances' queues, and runs their host steps", async () => {
    const onA = await server('mh-a', stack.host);
    const onB = await server('mh-b', hostB);
    expect(stack.agent.servedQueues()).toContain(instanceTaskQueue(onA.uuid));
    expect(stack.agent.servedQueues()).not.toContain(instanceTaskQueue(onB.uuid));
    expect(second.servedQueues()).toContain(instanceTaskQueue(onB.uuid));
    expect(second.servedQueues()).not.toContain(instanceTaskQueue(onA.uuid));

    for (const [instance, host] of [
      [onA, stack.host],
      [onB, hostB],
    ] as const) {
      const v = await volume(stack, `mh-${host}`);
      const started = await stack.service.attachVolume({ server: instance.uuid, volume: v.id });
      await stack.service.awaitAttach(started.handle);
      const ids = await identities(started.handle);
      expect(ids.reserveDeviceName).toContain(`compute-agent@${host} `);
      expect(ids.attachDisk).toContain(`compute-agent@${host} `);
    }
  });

  it('moves an instance to another host with an attach in flight: the attach finishes, the disks move, the queue follows', async () => {
    const vm = await server('mh-move', stack.host);
    const first = await volume(stack, 'mh-move-1');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: first.id })).handle);

    // Hold the second attach in flight a moment: its libvirt step fails twice (retryable) before it succeeds.
    const inFlight = await volume(stack, 'mh-move-2');
    stack.faults.inject('attachDisk', 'before', { times: 2, nonRetryable: false });
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: inFlight.id });
    const moved = await stack.service.migrateServer(vm.uuid, hostB);
    stack.faults.clear();
    const attached = await stack.service.awaitAttach(started.handle);
    expect(moved).toMatchObject({ host: hostB, vmState: 'active', taskState: null });
    expect((await identities(started.handle)).attachDisk).toContain(`compute-agent@${stack.host} `);

    await expect.poll(() => second.servedQueues().includes(instanceTaskQueue(vm.uuid))).toBe(true);
    await expect.poll(() => stack.agent.servedQueues().includes(instanceTaskQueue(vm.uuid))).toBe(false);
    const stores = await storesOf(stack, vm.uuid);
    for (const v of [first, inFlight]) {
      expect(stores.liveDisks.some((d) => d.serial === v.id)).toBe(true);
      expect(stores.configDisks.some((d) => d.serial === v.id)).toBe(true);
    }
    expect(stores.bdms.map((b) => b.attachStatus)).toEqual(['attached', 'attached']);
    expect(attached.device).not.toBeNull();

    // After the move, the instance's host steps run on the new host.
    const third = await volume(stack, 'mh-move-3');
    const after = await stack.service.attachVolume({ server: vm.uuid, volume: third.id });
    await stack.service.awaitAttach(after.handle);
    expect((await identities(after.handle)).attachDisk).toContain(`compute-agent@${hostB} `);

    const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue });
    expect(report.disagreements).toEqual([]);
  });
});
