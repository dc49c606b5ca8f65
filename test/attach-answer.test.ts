/**
 * A POST attach whose reservation comes late (issue 20's concurrent run: a slow Temporal turned 21
 * POSTs into 500s and held 62 past the API's connection timeout). On the real stack, with an API
 * whose attach answer waits 300 ms and a host step that fails three times before it reserves the
 * device name: the POST answers 503 with Retry-After, never a 500; the same POST, repeated until it
 * is answered, gets the reservation of the one run, and the volume is attached once (one BDM, one
 * attachment at the block storage, every update of the run answered with the same reservation). A
 * retry that comes after the attach went through gets the reservation too (the API remembers its
 * 503s), once. And the pair attached, detached and attached again gets a new run and a new
 * reservation (a fixed update id had Temporal answer the second attach from the closed first run).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { buildApiServer, type ApiServer } from '../src/api/server.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { liveBdmsOfVolume } from '../src/db/block-device-mappings.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import type { Instance } from '../src/domain/types.ts';
import type { AttachResult } from '../src/domain/contracts/attach-volume.ts';

let stack: TestStack;
let api: ApiServer;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-answer');
  const service = new TetherService({
    db: stack.db,
    client: stack.client,
    blockStorage: stack.blockStorage,
    config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host, availabilityZone: 'nova', defaultDiskBus: 'scsi', attachAnswerWaitMs: 300 },
  });
  api = await buildApiServer({ service, db: stack.db, client: stack.client, config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host } });
});

afterAll(async () => {
  stack?.faults.clear();
  await api?.close();
  await stack?.stop();
});

describe('the attach answer when the reservation comes late', () => {
  it('503 with Retry-After while unconfirmed, then the reservation of the one run; attached once', async () => {
    const v = await volume(stack, 'late-answer');
    // the host fails to reserve the device name three times (retried with backoff): seconds, not 300 ms
    stack.faults.inject('reserveDeviceName', 'before', { times: 3, nonRetryable: false });
    const answers: { status: number; retryAfter: string | undefined }[] = [];
    let last;
    for (let i = 0; i < 200; i++) {
      last = await api.inject({ method: 'POST', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`, payload: { volumeAttachment: { volumeId: v.id } } });
      answers.push({ status: last.statusCode, retryAfter: last.headers['retry-after'] as string | undefined });
      if (last.statusCode !== 503) break;
      expect(last.json().serviceUnavailable.message).toMatch(/Retry the same request/);
    }
    expect(answers[0]).toEqual({ status: 503, retryAfter: '5' });
    expect(answers.every((a) => a.status === 503 || a.status === 200)).toBe(true);
    expect(last!.statusCode).toBe(200);
    const { volumeAttachment } = last!.json() as { volumeAttachment: { device: string; volumeId: string; serverId: string } };
    expect(volumeAttachment).toMatchObject({ serverId: vm.uuid, volumeId: v.id, device: expect.stringMatching(/^\/dev\//) });

    const handle = stack.client.workflow.getHandle(attachWorkflowId(vm.uuid, v.id));
    await handle.result();
    const bdms = await liveBdmsOfVolume(stack.db, v.id);
    expect(bdms).toHaveLength(1);
    expect(bdms[0]!.deviceName).toBe(volumeAttachment.device);
    expect(await stack.blockStorage.listAttachments({ volumeId: v.id })).toHaveLength(1);
    const accepted = ((await handle.fetchHistory()).events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
    expect(accepted).toHaveLength(1);
    // the attach is done and its reservation was answered: the same POST again is Nova's refusal
    const again = await api.inject({ method: 'POST', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`, payload: { volumeAttachment: { volumeId: v.id } } });
    expect(again.statusCode).toBe(400);
  });

  it('a retry that comes after the attach went through gets its reservation, once; a later POST the refusal', async () => {
    const v = await volume(stack, 'late-retry');
    stack.faults.inject('reserveDeviceName', 'before', { times: 2, nonRetryable: false });
    const post = () => api.inject({ method: 'POST', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`, payload: { volumeAttachment: { volumeId: v.id } } });
    const first = await post();
    expect(first.statusCode).toBe(503);
    // the client waits longer than the attach takes: the run is over when it asks again
    const handle = stack.client.workflow.getHandle(attachWorkflowId(vm.uuid, v.id));
    const done = (await handle.result()) as AttachResult;
    const retry = await post();
    expect(retry.statusCode).toBe(200);
    expect(retry.json().volumeAttachment).toMatchObject({ serverId: vm.uuid, volumeId: v.id, device: done.device });
    expect(await liveBdmsOfVolume(stack.db, v.id)).toHaveLength(1);
    expect(await stack.blockStorage.listAttachments({ volumeId: v.id })).toHaveLength(1);
    const later = await post();
    expect(later.statusCode).toBe(400);
    expect(later.json().badRequest.message).toMatch(/already attached/);

  });

  it('attach, detach, attach again of the same pair: a new run and a new reservation, and the second detach finds it', async () => {
    const v = await volume(stack, 'again');
    const url = `/v2.1/servers/${vm.uuid}/os-volume_attachments`;
    const attach = async () => {
      const r = await api.inject({ method: 'POST', url, payload: { volumeAttachment: { volumeId: v.id } } });
      expect(r.statusCode).toBe(200);
      await stack.client.workflow.getHandle(attachWorkflowId(vm.uuid, v.id)).result();
      const bdms = await liveBdmsOfVolume(stack.db, v.id);
      expect(bdms).toHaveLength(1);
      return bdms[0]!.uuid;
    };
    const detach = async () => {
      const r = await api.inject({ method: 'DELETE', url: `${url}/${v.id}` });
      expect(r.statusCode).toBe(202);
      await stack.client.workflow.getHandle(detachWorkflowId(vm.uuid, v.id)).result();
      expect(await liveBdmsOfVolume(stack.db, v.id)).toHaveLength(0);
    };
    const first = await attach();
    await detach();
    const second = await attach();
    expect(second).not.toBe(first);
    await detach();
    expect(await stack.blockStorage.listAttachments({ volumeId: v.id })).toHaveLength(0);
  });
});
