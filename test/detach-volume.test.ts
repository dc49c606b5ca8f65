/**
 * The DetachVolume saga: real Temporal dev server, real PostgreSQL, real libvirt + QEMU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, storesOf, volume } from './support/fixtures.ts';
import type { Instance } from '../src/domain/types.ts';

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack({ detachUnplugWaitMs: 1_500 });
  vm = await runningServer(stack, 'vm-detach');
});

afterAll(async () => {
  await stack?.stop();
});

async function attach(server: string, volumeId: string, device?: string) {
  const started = await stack.service.attachVolume({ server, volume: volumeId, device: device ?? null });
  return stack.service.awaitAttach(started.handle);
}

async function detach(server: string, volumeId: string) {
  const { handle } = await stack.service.detachVolume({ server, volume: volumeId });
  return stack.service.awaitDetach(handle);
}

describe('detach', () => {
  it('attach → detach → attach again of the same volume ends attached', async () => {
    const v = await volume(stack, 'cycle');
    const first = await attach(vm.uuid, v.id);
    await detach(vm.uuid, v.id);
    let stores = await storesOf(stack, vm.uuid);
    expect(stores.bdms.filter((b) => b.volumeId === v.id)).toEqual([]);
    expect(stores.liveDisks.filter((d) => d.serial === v.id)).toEqual([]);
    expect(stores.configDisks.filter((d) => d.serial === v.id)).toEqual([]);
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'available', attachments: [] });

    const second = await attach(vm.uuid, v.id);
    expect(second.device).toBe(first.device);
    stores = await storesOf(stack, vm.uuid);
    expect(stores.liveDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  });

  it('a volume that is not attached → VolumeNotAttached (404), nothing started', async () => {
    const v = await volume(stack, 'never-attached');
    const err = await stack.service.detachVolume({ server: vm.uuid, volume: v.id }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'VolumeNotAttached', status: 404, message: `Instance ${vm.uuid} is not attached to volume ${v.id}` });
  });

  it('a failure in the libvirt detach leaves the volume in-use, the BDM and the disk in place', async () => {
    const v = await volume(stack, 'detach-fails');
    await attach(vm.uuid, v.id);
    stack.faults.inject('detachDisk', 'after', { times: 1 });
    const err = await detach(vm.uuid, v.id).catch((e: unknown) => e);
    stack.faults.clear();
    expect((err as Error).message).toMatch(/failed at step detachDisk: Injected fault after step detachDisk \(the volume stays attached\)/);
    const stores = await storesOf(stack, vm.uuid);
    expect(stores.bdms.find((b) => b.volumeId === v.id)).toMatchObject({ attachStatus: 'attached' });
    expect(stores.liveDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
    expect(stores.configDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  });

  it('a guest that ignores a virtio unplug: the detach gives up and rolls back, the disk stays', async () => {
    const v = await volume(stack, 'virtio-stuck');
    const attached = await attach(vm.uuid, v.id, '/dev/vdb');
    expect(attached.device).toBe('/dev/vdb');
    const err = await detach(vm.uuid, v.id).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/did not release disk vdb/);
    const stores = await storesOf(stack, vm.uuid);
    expect(stores.bdms.find((b) => b.volumeId === v.id)).toMatchObject({ attachStatus: 'attached', deviceName: '/dev/vdb' });
    expect(stores.liveDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
    expect(stores.configDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  }, 180_000);

  it('a detach asked while the attach of the same pair is in flight runs after it, in order', async () => {
    const v = await volume(stack, 'interleaved');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    const { handle } = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitAttach(started.handle);
    await stack.service.awaitDetach(handle);
    const attachDone = (await started.handle.describe()).closeTime!;
    const detachSteps = await handle.query<{ steps: Array<{ step: string; startedAt: string }> }>('progress');
    const validate = detachSteps.steps.find((s) => s.step === 'validateDetach')!;
    expect(Date.parse(validate.startedAt)).toBeGreaterThanOrEqual(attachDone.getTime() - 5);
    const stores = await storesOf(stack, vm.uuid);
    expect(stores.bdms.filter((b) => b.volumeId === v.id)).toEqual([]);
    expect(stores.liveDisks.filter((d) => d.serial === v.id)).toEqual([]);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });
});
