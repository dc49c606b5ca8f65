/**
 * Retry and inspection of attaches: a fresh run of the same workflow id, a reset from history (what the
 * Temporal UI's Reset does), the history of steps and the list of operations.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, storesOf, volume } from './support/fixtures.ts';
import type { Instance } from '../src/domain/types.ts';
import type { AttachResult } from '../src/domain/contracts/attach-volume.ts';

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-lifecycle');
});

afterAll(async () => {
  await stack?.stop();
});

async function failedAttach(name: string, step = 'attachDisk') {
  const v = await volume(stack, name);
  stack.faults.inject(step, 'before', { times: 1 });
  const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id, tag: 'data' });
  const err = await stack.service.awaitAttach(started.handle).catch((e: unknown) => e as Error);
  stack.faults.clear();
  expect(err).toBeInstanceOf(Error);
  return { v, started };
}

describe('retry', () => {
  it('retrying a failed attach starts a new run of the same workflow id, with the same request, and ends attached', async () => {
    const { v, started } = await failedAttach('retry-me');
    const firstRun = (await started.handle.describe()).runId;
    const retried = await stack.service.retryAttach(vm.name, v.name!);
    expect(retried.workflowId).toBe(started.workflowId);
    const result = await stack.service.awaitAttach(retried.handle);
    expect((await retried.handle.describe()).runId).not.toBe(firstRun);
    expect(result.tag).toBe('data');
    const stores = await storesOf(stack, vm.uuid);
    expect(stores.bdms.find((b) => b.volumeId === v.id)).toMatchObject({ attachStatus: 'attached', tag: 'data' });
    expect(stores.liveDisks.some((d) => d.serial === v.id)).toBe(true);
    // both attempts are visible in history
    const runs = [];
    for await (const w of stack.client.workflow.list({ query: `WorkflowId = '${started.workflowId}'` })) runs.push(w.status.name);
    expect(runs.sort()).toEqual(['COMPLETED', 'FAILED']);
  });

  it('refuses to retry an attach that succeeded', async () => {
    const v = await volume(stack, 'no-retry');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    await expect(stack.service.retryAttach(vm.uuid, v.id)).rejects.toMatchObject({ type: 'VolumeAlreadyAttached' });
  });

  it('a reset of the failed workflow to its first workflow task completes it (every activity is idempotent)', async () => {
    const { v, started } = await failedAttach('reset-me');
    const description = await started.handle.describe();
    const history = await started.handle.fetchHistory();
    const firstTask = history.events!.find((e) => e.workflowTaskCompletedEventAttributes)!;
    const { runId } = await stack.client.workflowService.resetWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId: started.workflowId, runId: description.runId },
      workflowTaskFinishEventId: firstTask.eventId,
      requestId: randomUUID(),
      reason: 'test: reset like the Temporal UI does',
    });
    const result = (await stack.client.workflow.getHandle(started.workflowId, runId!).result()) as AttachResult;
    expect(result.device).toMatch(/^\/dev\/sd[a-z]+$/);
    const stores = await storesOf(stack, vm.uuid);
    expect(stores.bdms.filter((b) => b.volumeId === v.id)).toHaveLength(1);
    expect(stores.liveDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  });
});

describe('inspection', () => {
  it('history shows each step of the latest attempt with its outcome and the failure reason', async () => {
    const { v } = await failedAttach('inspect-me', 'initializeConnection');
    const h = await stack.service.operationHistory(vm.uuid, v.id);
    expect(h.kind).toBe('attach');
    expect(h.status).toBe('FAILED');
    expect(h.state).toBe('rolled-back');
    expect(h.steps.map((s) => `${s.step}:${s.status}`)).toEqual([
      'awaitEarlierOperation:completed',
      'validate:completed',
      'takeGeneration:completed',
      'reserveDeviceName:completed',
      'reserveVolume:completed',
      'getHostConnector:completed',
      'initializeConnection:failed',
      'deleteAttachment:compensated',
      'destroyBdm:compensated',
    ]);
    expect(h.error?.message).toBe('Injected fault before step initializeConnection');
  });

  it('operations lists attaches and detaches, and --failed only the failed ones', async () => {
    const all = await stack.service.listOperations();
    const failed = await stack.service.listOperations({ failed: true });
    expect(all.length).toBeGreaterThan(failed.length);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((o) => o.status === 'FAILED')).toBe(true);
    expect(all.every((o) => o.instanceUuid === vm.uuid && o.host === stack.host)).toBe(true);
  });

  it('the progress query reports the current step while an attach runs', async () => {
    const v = await volume(stack, 'watch-me');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    const seen = new Set<string>();
    let done = false;
    const result = stack.service.awaitAttach(started.handle).finally(() => (done = true));
    while (!done) {
      const p = await stack.service.attachProgress(started.handle);
      if (p.currentStep) seen.add(p.currentStep);
    }
    await result;
    expect(seen.size).toBeGreaterThan(0);
    expect((await stack.service.attachProgress(started.handle)).state).toBe('attached');
  });
});

describe('multiattach', () => {
  it('attaches a multiattach volume to two servers as a shareable disk', async () => {
    const other = await runningServer(stack, 'vm-lifecycle-2');
    const shared = await volume(stack, 'shared', { multiattach: true });
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: shared.id })).handle);
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: other.uuid, volume: shared.id })).handle);
    const after = await stack.blockStorage.getVolume(shared.id);
    expect(after.status).toBe('in-use');
    expect(after.attachments.map((a) => a.serverId).sort()).toEqual([vm.uuid, other.uuid].sort());
    for (const server of [vm.uuid, other.uuid]) {
      const xml = await stack.libvirt.getXml(server);
      expect(xml).toMatch(new RegExp(`<shareable/>[\\s\\S]*?<serial>${shared.id}</serial>|<serial>${shared.id}</serial>[\\s\\S]*?<shareable/>`));
    }
    // detaching from one keeps it in-use for the other
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: other.uuid, volume: shared.id })).handle);
    expect(await stack.blockStorage.getVolume(shared.id)).toMatchObject({ status: 'in-use', attachments: [expect.objectContaining({ serverId: vm.uuid })] });
  });
});
