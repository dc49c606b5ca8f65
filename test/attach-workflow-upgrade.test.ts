/**
 * The attach workflow across the 'connector-with-device-name' change, with fake activities on the
 * suite's real Temporal dev server: an agent that knows the change answers reserveDeviceName with the
 * host connector and no getHostConnector activity is scheduled; an agent older than the change
 * answers without one and the workflow asks getHostConnector as before (a rolling upgrade).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { workflowBundle } from './support/test-stack.ts';
import { instanceTaskQueue } from '../src/domain/task-queues.ts';
import { historySteps } from './support/history-steps.ts';
import type { HostConnector } from '../src/domain/types.ts';

const connector: HostConnector = { host: 'fake-host', ip: '192.0.2.1', initiator: 'iqn.1993-08.org.debian:01:fake', multipath: false, platform: 'x86_64', os_type: 'linux', do_local_attach: false };

let connection: NativeConnection;
let clientConnection: Connection;
let client: Client;

beforeAll(async () => {
  const address = inject('temporalAddress');
  connection = await NativeConnection.connect({ address });
  clientConnection = await Connection.connect({ address });
  client = new Client({ connection: clientConnection });
});

afterAll(async () => {
  await clientConnection?.close();
  await connection?.close();
});

/** Runs one attach with fake steps; `agentKnowsPatch` decides whether reserveDeviceName returns the connector. */
async function attachWith(agentKnowsPatch: boolean) {
  const id = randomUUID();
  const instanceUuid = randomUUID();
  const calls: string[] = [];
  const initializedWith: unknown[] = [];
  const control = {
    async isEarlierOperationRunning() { calls.push('isEarlierOperationRunning'); return false; },
    async validateAttach() { calls.push('validateAttach'); return { shelvedOffloaded: false }; },
    async takeGeneration() { calls.push('takeGeneration'); return { generation: 1 }; },
    async reserveVolume() { calls.push('reserveVolume'); return { attachmentId: 'att-1' }; },
    async initializeConnection(input: { connector: unknown }) { calls.push('initializeConnection'); initializedWith.push(input.connector); return {}; },
    async completeAttachment() { calls.push('completeAttachment'); },
    async markBdmAttached() { calls.push('markBdmAttached'); },
  };
  const host = {
    async reserveDeviceName(input: { bdmUuid: string; withConnector?: boolean }) {
      calls.push(`reserveDeviceName(withConnector=${input.withConnector === true})`);
      const reserved = { bdmUuid: input.bdmUuid, deviceName: '/dev/sdb', diskBus: 'scsi' };
      return agentKnowsPatch && input.withConnector ? { ...reserved, connector } : reserved;
    },
    async getHostConnector() { calls.push('getHostConnector'); return connector; },
    async attachDisk() { calls.push('attachDisk'); return { target: 'sdb', live: true }; },
  };
  const taskQueue = `upgrade-control-${id}`;
  const controlWorker = await Worker.create({ connection, taskQueue, workflowBundle: await workflowBundle(), activities: control });
  const hostWorker = await Worker.create({ connection, taskQueue: instanceTaskQueue(instanceUuid), activities: host, maxConcurrentActivityTaskExecutions: 1 });
  const result = await controlWorker.runUntil(
    hostWorker.runUntil(async () => {
      const handle = await client.workflow.start('attachVolume', {
        taskQueue,
        workflowId: `upgrade-attach-${id}`,
        args: [{ instanceUuid, volumeId: randomUUID(), device: null, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null }],
      });
      await handle.result();
      return historySteps(await handle.fetchHistory()).map((s) => `${s.kind}:${s.name}`);
    }),
  );
  return { calls, initializedWith, history: result };
}

describe("attach across the 'connector-with-device-name' change", () => {
  it('an agent that knows it: the connector comes with the device name, no getHostConnector activity', async () => {
    const { calls, initializedWith, history } = await attachWith(true);
    expect(calls).toContain('reserveDeviceName(withConnector=true)');
    expect(calls).not.toContain('getHostConnector');
    expect(initializedWith).toEqual([connector]);
    expect(history.filter((s) => s.startsWith('activity:'))).toEqual(['activity:reserveDeviceName', 'activity:attachDisk']);
  });

  it('an agent older than it (no connector in its answer): the workflow asks getHostConnector, as before', async () => {
    const { calls, initializedWith, history } = await attachWith(false);
    expect(calls.indexOf('getHostConnector')).toBeGreaterThan(calls.indexOf('reserveVolume'));
    expect(initializedWith).toEqual([connector]);
    expect(history.filter((s) => s.startsWith('activity:'))).toEqual(['activity:reserveDeviceName', 'activity:getHostConnector', 'activity:attachDisk']);
  });
});
