/**
 * Volumes through the server's life: shelve, shelve-offload (attach without a host), unshelve
 * (the device appears), instance-state rules, and delete with delete_on_termination.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, storesOf, volume } from './support/fixtures.ts';
import { setInstanceState } from '../src/db/instances.ts';
import { liveBdmsOfInstance } from '../src/db/block-device-mappings.ts';
import { historySteps } from './support/history-steps.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await startTestStack();
});

afterAll(async () => {
  await stack?.stop();
});

async function attach(server: string, volumeId: string, options: { tag?: string; deleteOnTermination?: boolean } = {}) {
  const started = await stack.service.attachVolume({ server, volume: volumeId, ...options });
  return stack.service.awaitAttach(started.handle);
}

describe('shelved-offloaded instances', () => {
  it('shelve-offload, attach (no device, no host step), unshelve: the device appears', async () => {
    const vm = await runningServer(stack, 'vm-shelve');
    const before = await volume(stack, 'before-shelve');
    const beforeResult = await attach(vm.uuid, before.id);

    expect((await stack.service.shelveServer(vm.uuid)).vmState).toBe('shelved');
    const offloaded = await stack.service.shelveOffloadServer(vm.uuid);
    expect(offloaded).toMatchObject({ vmState: 'shelved_offloaded', host: null, taskState: null });
    expect(await stack.libvirt.lookupDomain(vm.uuid)).toBeNull();
    // the volume stays reserved for the instance while no host holds it
    expect((await stack.blockStorage.getVolume(before.id)).status).toBe('reserved');

    const later = await volume(stack, 'while-offloaded');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: later.id });
    expect(started.reservation.device).toBeNull();
    const result = await stack.service.awaitAttach(started.handle);
    expect(result).toMatchObject({ device: null, hostAttached: false });
    const steps = historySteps(await started.handle.fetchHistory()).map((s) => s.name);
    expect(steps).toEqual(['isEarlierOperationRunning', 'validateAttach', 'takeGeneration', 'createShelvedBdm', 'reserveVolume']);
    expect((await stack.blockStorage.getVolume(later.id)).status).toBe('reserved');
    expect((await liveBdmsOfInstance(stack.db, vm.uuid)).find((b) => b.volumeId === later.id)?.deviceName).toBeNull();

    const { instance, devices } = await stack.service.unshelveServer(vm.uuid);
    expect(instance).toMatchObject({ vmState: 'active', host: stack.host });
    expect(devices[before.id]).toBe(beforeResult.device);
    expect(devices[later.id]).toMatch(/^\/dev\/sd[a-z]$/);
    expect(devices[later.id]).not.toBe(devices[before.id]);
    const stores = await storesOf(stack, vm.uuid);
    for (const v of [before, later]) {
      expect(stores.liveDisks.find((d) => d.serial === v.id)?.target).toBe(devices[v.id]!.slice(5));
      expect(stores.bdms.find((b) => b.volumeId === v.id)).toMatchObject({ attachStatus: 'attached', deviceName: devices[v.id] });
      expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
    }
  });

  it('refuses a tagged attach to a shelved-offloaded instance, and detaches from it without a host', async () => {
    const vm = await runningServer(stack, 'vm-offloaded-2');
    await stack.service.shelveServer(vm.uuid);
    await stack.service.shelveOffloadServer(vm.uuid);
    const v = await volume(stack, 'tagged-offloaded');
    await expect(stack.service.attachVolume({ server: vm.uuid, volume: v.id, tag: 'db' })).rejects.toMatchObject({
      type: 'TaggedAttachToShelvedNotSupported',
      status: 400,
    });
    await attach(vm.uuid, v.id);
    const { handle } = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitDetach(handle);
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'available', attachments: [] });
    expect(await liveBdmsOfInstance(stack.db, vm.uuid)).toEqual([]);
  });
});

describe('instance states', () => {
  it.each(['building', 'suspended', 'rescued', 'error'] as const)('refuses attach in vm_state %s with 409 naming the state', async (vmState) => {
    const vm = await runningServer(stack, `vm-${vmState}`);
    await setInstanceState(stack.db, vm.uuid, { vmState, taskState: null });
    const v = await volume(stack, `state-${vmState}`);
    await expect(stack.service.attachVolume({ server: vm.uuid, volume: v.id })).rejects.toMatchObject({
      type: 'InstanceInvalidState',
      status: 409,
      message: `Cannot 'attach_volume' instance ${vm.uuid} while it is in vm_state ${vmState}`,
    });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });

  it('refuses attach while another task runs, and allows it on a stopped (shelved) domain, config only', async () => {
    const vm = await runningServer(stack, 'vm-task');
    await setInstanceState(stack.db, vm.uuid, { vmState: 'active', taskState: 'rebooting' });
    const v = await volume(stack, 'task-busy');
    await expect(stack.service.attachVolume({ server: vm.uuid, volume: v.id })).rejects.toMatchObject({
      status: 409,
      message: `Cannot 'attach_volume' instance ${vm.uuid} while it is in task_state rebooting`,
    });
    await setInstanceState(stack.db, vm.uuid, { vmState: 'active', taskState: null });
    await stack.service.shelveServer(vm.uuid);
    const result = await attach(vm.uuid, v.id);
    const config = await stack.libvirt.getXml(vm.uuid, { inactive: true });
    expect(config).toContain(`<serial>${v.id}</serial>`);
    expect(result.device).toBe('/dev/sdb');
  });
});

describe('server delete', () => {
  it('detaches every volume and deletes those marked delete_on_termination', async () => {
    const vm = await runningServer(stack, 'vm-delete');
    const keep = await volume(stack, 'keep-me');
    const drop = await volume(stack, 'drop-me');
    await attach(vm.uuid, keep.id);
    await attach(vm.uuid, drop.id, { deleteOnTermination: true, tag: 'scratch' });
    expect((await liveBdmsOfInstance(stack.db, vm.uuid)).find((b) => b.volumeId === drop.id)).toMatchObject({ deleteOnTermination: true, tag: 'scratch' });

    const { deletedVolumes } = await stack.service.deleteServer(vm.uuid);
    expect(deletedVolumes).toEqual([drop.id]);
    expect(await stack.libvirt.lookupDomain(vm.uuid)).toBeNull();
    expect(await stack.blockStorage.getVolume(keep.id)).toMatchObject({ status: 'available', attachments: [] });
    await expect(stack.blockStorage.getVolume(drop.id)).rejects.toMatchObject({ type: 'VolumeNotFound' });
    await expect(stack.service.resolveServer(vm.uuid)).rejects.toMatchObject({ type: 'InstanceNotFound' });
    expect(await liveBdmsOfInstance(stack.db, vm.uuid)).toEqual([]);
  });
});
