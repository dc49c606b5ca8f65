/**
 * One request, one pass: a POST attach through the real API reads the instance once and the volume
 * once before the workflow starts (it used to be three and two: the route, the caller's view of the
 * service and the service each resolved them; with Cinder the volume reads are HTTP calls), and
 * starts the workflow once. The same for a DELETE (detach). Counted on a service of its own over
 * the test stack, so that the workflow's own reads (its validate step) are not counted.
 */
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import type { Client } from '@temporalio/client';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { buildApiServer, type ApiServer } from '../src/api/server.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { TetherService } from '../src/service/tether-service.ts';
import type { BlockStorage, VolumeAdmin } from '../src/blockstorage/block-storage.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import type { Instance } from '../src/domain/types.ts';

let stack: TestStack;
let api: ApiServer;
let db: Database;
let vm: Instance;
/** Calls of the block storage by the API's service, by method. */
const storageCalls = new Map<string, number>();
type Spy = MockInstance<(...args: unknown[]) => unknown>;
let query: Spy;
let updateWithStart: Spy;
let start: Spy;

/** The block storage as the API's service sees it, every call counted. */
function counted(storage: BlockStorage & VolumeAdmin): BlockStorage & VolumeAdmin {
  return new Proxy(storage, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        storageCalls.set(String(key), (storageCalls.get(String(key)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/** The SQL statements the API's service sent that read or write the instances table. */
function instanceQueries(): string[] {
  return query.mock.calls.map((c) => (typeof c[0] === 'string' ? c[0] : (c[0] as { text: string }).text)).filter((sql) => /\binstances\b/.test(sql));
}

function resetCounts(): void {
  storageCalls.clear();
  query.mockClear();
  updateWithStart.mockClear();
  start.mockClear();
}

beforeAll(async () => {
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-path');
  // the API's own pool and client wrapper: only what the request's path does is counted
  db = createDatabase(stack.databaseUrl, { max: 4 });
  query = vi.spyOn(db, 'query') as unknown as Spy;
  const workflow = Object.create(stack.client.workflow) as Client['workflow'];
  updateWithStart = vi.spyOn(workflow, 'executeUpdateWithStart') as unknown as Spy;
  start = vi.spyOn(workflow, 'start') as unknown as Spy;
  const client = Object.create(stack.client, { workflow: { value: workflow } }) as Client;
  const service = new TetherService({
    db,
    client,
    blockStorage: counted(stack.blockStorage),
    config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host, availabilityZone: 'nova', defaultDiskBus: 'scsi' },
  });
  api = await buildApiServer({ service, db, client, config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host } });
});

afterAll(async () => {
  await api?.close();
  await db?.end();
  await stack?.stop();
});

describe('one request, one pass from the route to the workflow start', () => {
  it('POST attach: the instance read once, the volume read once, one update-with-start', async () => {
    const v = await volume(stack, 'path-attach');
    resetCounts();
    const r = await api.inject({ method: 'POST', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`, payload: { volumeAttachment: { volumeId: v.id } } });
    expect(r.statusCode).toBe(200);
    expect(r.json().volumeAttachment).toMatchObject({ serverId: vm.uuid, volumeId: v.id });

    expect(instanceQueries()).toHaveLength(1);
    expect(Object.fromEntries(storageCalls)).toEqual({ getVolume: 1 });
    expect(updateWithStart).toHaveBeenCalledTimes(1);
    expect(start).not.toHaveBeenCalled();
    // one more read in all: the BDM of the pair (is it attached already?)
    expect(query).toHaveBeenCalledTimes(2);
    await stack.client.workflow.getHandle(attachWorkflowId(vm.uuid, v.id)).result();
  });

  it('DELETE (detach): the instance read once, the volume read once, one workflow start', async () => {
    const v = await volume(stack, 'path-detach');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    resetCounts();
    const r = await api.inject({ method: 'DELETE', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments/${v.id}` });
    expect(r.statusCode).toBe(202);

    expect(instanceQueries()).toHaveLength(1);
    expect(Object.fromEntries(storageCalls)).toEqual({ getVolume: 1 });
    expect(start).toHaveBeenCalledTimes(1);
    expect(updateWithStart).not.toHaveBeenCalled();
    await stack.client.workflow.getHandle(detachWorkflowId(vm.uuid, v.id)).result();
  });

  it('a refusal that needs no workflow starts none: the same reads, no start', async () => {
    const v = await volume(stack, 'path-refused');
    resetCounts();
    const r = await api.inject({
      method: 'POST',
      url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`,
      payload: { volumeAttachment: { volumeId: v.id, device: 'sdb' } },
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().badRequest.message).toMatch(/device path \(sdb\) is invalid/);
    expect(instanceQueries()).toHaveLength(1);
    expect(Object.fromEntries(storageCalls)).toEqual({ getVolume: 1 });
    expect(updateWithStart).not.toHaveBeenCalled();
  });
});
