/**
 * The AttachVolume saga end to end: real Temporal dev server, real PostgreSQL, real libvirt + QEMU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { ATTACH_FAULT_POINTS, runningServer, storesOf, volume } from './support/fixtures.ts';
import { TetherError } from '../src/errors.ts';
import type { Instance } from '../src/domain/types.ts';
import { historySteps } from './support/history-steps.ts';

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-attach');
});

afterAll(async () => {
  await stack?.stop();
});

describe('a successful attach', () => {
  it('puts the disk in the domain, a live attached BDM in the database and the volume in-use', async () => {
    const v = await volume(stack, 'data-1');
    const started = await stack.service.attachVolume({ server: vm.name, volume: v.name! });
    expect(started.reservation.device).toBe('/dev/sdb');
    const result = await stack.service.awaitAttach(started.handle);
    expect(result.device).toBe('/dev/sdb');

    const { bdms, liveDisks, configDisks } = await storesOf(stack, vm.uuid);
    const bdm = bdms.find((b) => b.volumeId === v.id);
    expect(bdm).toMatchObject({ deviceName: '/dev/sdb', attachStatus: 'attached', attachmentId: result.attachmentId });
    expect(liveDisks.find((d) => d.serial === v.id)?.target).toBe('sdb');
    expect(configDisks.find((d) => d.serial === v.id)?.target).toBe('sdb');

    const after = await stack.blockStorage.getVolume(v.id);
    expect(after.status).toBe('in-use');
    expect(after.attachments).toEqual([expect.objectContaining({ serverId: vm.uuid, device: '/dev/sdb', attachmentId: result.attachmentId })]);
  });

  it('records one activity per step in the workflow history, with the search attributes set', async () => {
    const v = await volume(stack, 'data-history');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitAttach(started.handle);
    const history = await started.handle.fetchHistory();
    // Host steps are activities on the instance's own queue; the control plane's quick database and
    // block-storage steps, and the look for an earlier operation on the pair (nothing to wait for
    // here, so no waiting activity), are local activities of the control worker, each recorded as a
    // marker (workflows/activity-options.ts). The host reads its connector in reserveDeviceName (one
    // round trip to the host instead of two); getHostConnector is still a step of the progress.
    expect(historySteps(history).map((s) => `${s.kind}:${s.name}`)).toEqual([
      'local:isEarlierOperationRunning',
      'local:validateAttach',
      'local:takeGeneration',
      'activity:reserveDeviceName',
      'local:reserveVolume',
      'local:initializeConnection',
      'activity:attachDisk',
      'local:completeAttachment',
      'local:markBdmAttached',
    ]);
    const description = await started.handle.describe();
    const sa = description.typedSearchAttributes;
    expect(sa.get({ name: 'InstanceUuid', type: 'KEYWORD' } as never)).toBe(vm.uuid);
    expect(sa.get({ name: 'VolumeId', type: 'KEYWORD' } as never)).toBe(v.id);
    expect(sa.get({ name: 'ComputeHost', type: 'KEYWORD' } as never)).toBe(stack.host);
    expect(sa.get({ name: 'TetherState', type: 'KEYWORD' } as never)).toBe('attached');
  });
});

describe('a failure injected at each step rolls everything back', () => {
  const cases = ATTACH_FAULT_POINTS;
  it.each(cases)('failing %s (%s it runs) leaves no BDM, the volume available and no disk', async (step, phase) => {
    const v = await volume(stack, `fail-${step}-${phase}`);
    stack.faults.inject(step, phase, { times: 1 });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id }).catch((err: unknown) => err as Error);
      if (started instanceof Error) {
        // failed before the reservation point: the POST itself fails
        expect(started.message).toMatch(new RegExp(`Injected fault ${phase} step ${step}`));
      } else {
        const err = await stack.service.awaitAttach(started.handle).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(new RegExp(`failed at step \\w+: Injected fault ${phase} step ${step} \\(everything was rolled back\\)`));
      }
    } finally {
      stack.faults.clear();
    }
    const { bdms, liveDisks, configDisks } = await storesOf(stack, vm.uuid);
    expect(bdms.filter((b) => b.volumeId === v.id)).toEqual([]);
    expect(liveDisks.filter((d) => d.serial === v.id)).toEqual([]);
    expect(configDisks.filter((d) => d.serial === v.id)).toEqual([]);
    const after = await stack.blockStorage.getVolume(v.id);
    expect(after.status).toBe('available');
    expect(after.attachments).toEqual([]);
  });
});

describe('concurrency and idempotency', () => {
  it('gives 20 concurrent attaches of different volumes to one instance 20 distinct devices', async () => {
    const target = await runningServer(stack, 'vm-concurrent');
    const volumes = await Promise.all(Array.from({ length: 20 }, (_, i) => volume(stack, `conc-${i}`)));
    const started = await Promise.all(volumes.map((v) => stack.service.attachVolume({ server: target.uuid, volume: v.id })));
    const results = await Promise.all(started.map((s) => stack.service.awaitAttach(s.handle)));
    const devices = results.map((r) => r.device);
    expect(new Set(devices).size).toBe(20);
    const { bdms, liveDisks } = await storesOf(stack, target.uuid);
    expect(bdms).toHaveLength(20);
    expect(new Set(liveDisks.map((d) => d.target)).size).toBe(20);
    for (const v of volumes) expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  }, 240_000); // a deadline, not a performance target: 20 sagas on one instance queue take ~6 s on a quiet machine

  it('joins the same request made twice: one workflow, one attachment', async () => {
    const target = await runningServer(stack, 'vm-idempotent');
    const v = await volume(stack, 'twice');
    const [a, b] = await Promise.all([
      stack.service.attachVolume({ server: target.uuid, volume: v.id }),
      stack.service.attachVolume({ server: target.uuid, volume: v.id }),
    ]);
    expect(a.workflowId).toBe(b.workflowId);
    expect(a.reservation).toEqual(b.reservation);
    await stack.service.awaitAttach(a.handle);
    const runs = [];
    for await (const w of stack.client.workflow.list({ query: `WorkflowId = '${a.workflowId}'` })) runs.push(w);
    expect(runs).toHaveLength(1);
    expect((await stack.blockStorage.getVolume(v.id)).attachments).toHaveLength(1);
    expect((await storesOf(stack, target.uuid)).bdms).toHaveLength(1);
  });

  it('refuses a second attach of an attached volume with a clear message and changes nothing', async () => {
    const target = await runningServer(stack, 'vm-again');
    const v = await volume(stack, 'again');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: target.uuid, volume: v.id })).handle);
    const err = await stack.service.attachVolume({ server: target.uuid, volume: v.id }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TetherError);
    expect(err).toMatchObject({ type: 'VolumeAlreadyAttached', status: 400 });
    expect((await storesOf(stack, target.uuid)).bdms).toHaveLength(1);
    expect(WorkflowExecutionAlreadyStartedError).toBeDefined();
  });
});

describe('bad input fails before anything changes', () => {
  async function snapshot() {
    const { rows } = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM block_device_mappings');
    const volumes = await stack.blockStorage.listVolumes();
    return { bdmRows: rows[0]!.n, volumes: volumes.map((v) => `${v.id}:${v.status}:${v.attachments.length}`).sort() };
  }

  it('unknown server → InstanceNotFound (404)', async () => {
    const v = await volume(stack, 'bad-server');
    const before = await snapshot();
    const err = await stack.service.attachVolume({ server: 'no-such-server', volume: v.id }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'InstanceNotFound', status: 404, message: 'Instance no-such-server could not be found.' });
    expect(await snapshot()).toEqual(before);
  });

  it('unknown volume → VolumeNotFound (404)', async () => {
    const before = await snapshot();
    const err = await stack.service.attachVolume({ server: vm.uuid, volume: '00000000-0000-4000-8000-000000000000' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'VolumeNotFound', status: 404 });
    expect(await snapshot()).toEqual(before);
  });

  it.each(['vdb', '/dev/', '/dev/VDB', '/dev/vdb;rm', '../etc/passwd'])('bad device path %j → InvalidDevicePath (400)', async (device) => {
    const v = await volume(stack, `bad-device-${device.length}`);
    const before = await snapshot();
    const err = await stack.service.attachVolume({ server: vm.uuid, volume: v.id, device }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'InvalidDevicePath', status: 400, message: `The supplied device path (${device}) is invalid.` });
    expect(await snapshot()).toEqual(before);
  });

  it('volume in use by another server → VolumeNotAvailable (400)', async () => {
    const other = await runningServer(stack, 'vm-other');
    const v = await volume(stack, 'busy');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: other.uuid, volume: v.id })).handle);
    const before = await snapshot();
    const err = await stack.service.attachVolume({ server: vm.uuid, volume: v.id }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'VolumeNotAvailable', status: 400 });
    expect((err as Error).message).toMatch(/status must be available, but current status is: in-use/);
    expect(await snapshot()).toEqual(before);
  });

  it('a device path already in use → DevicePathInUse (409)', async () => {
    const target = await runningServer(stack, 'vm-device-busy');
    const a = await volume(stack, 'dev-a');
    const b = await volume(stack, 'dev-b');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: target.uuid, volume: a.id, device: '/dev/sdc' })).handle);
    const before = await snapshot();
    const err = await stack.service.attachVolume({ server: target.uuid, volume: b.id, device: '/dev/sdc' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'DevicePathInUse', status: 409 });
    expect(await snapshot()).toEqual(before);
  });
});
