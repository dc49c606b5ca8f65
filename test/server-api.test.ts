/**
 * The server lifecycle through the API on the real stack, with Debian's openstack CLI and plain HTTP:
 * flavors; stop, start and reboot (the libvirt domain follows, the states are Nova's meanwhile and
 * after); Nova's 409s for a refused state; shelve and unshelve; a server booted from a volume
 * (block_device_mapping_v2, --nic none) and deleted (its volume detached, delete_on_termination honoured).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { openstack, openstackJson, startTestApi, writeCloud, type Cloud, type RunningApi } from './support/clouds.ts';
import { liveBdmsOfInstance } from '../src/db/block-device-mappings.ts';

let stack: TestStack;
let api: RunningApi;
let cloud: Cloud;

// each openstack CLI run starts a Python interpreter: seconds each, far more on a loaded machine
vi.setConfig({ testTimeout: 300_000 });

beforeAll(async () => {
  stack = await startTestStack();
  api = await startTestApi(stack);
  cloud = await writeCloud(api.url);
});

afterAll(async () => {
  await cloud?.dispose();
  await api?.close();
  await stack?.stop();
});

async function http(method: string, path: string, body?: unknown, version = '2.100') {
  const res = await fetch(`${api.url}/v2.1${path}`, {
    method,
    headers: { 'content-type': 'application/json', 'openstack-api-version': `compute ${version}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : null, headers: res.headers };
}

async function serverOf(id: string) {
  return (await http('GET', `/servers/${id}`)).body!.server as Record<string, unknown>;
}

async function waitStatus(id: string, status: string) {
  await expect.poll(async () => (await serverOf(id)).status, { timeout: 60_000, interval: 200 }).toBe(status);
  return serverOf(id);
}

describe('flavors', () => {
  it('openstack flavor list shows the fixed sizes; show by id; an unknown id is a 404', async () => {
    const list = await openstackJson<{ ID: string; RAM: number; VCPUs: number; Disk: number }[]>(cloud, ['flavor', 'list']);
    expect(list.map((f) => [f.ID, f.RAM, f.VCPUs, f.Disk])).toEqual([
      ['tether.medium', 256, 2, 0],
      ['tether.small', 128, 1, 0],
      ['tether.tiny', 64, 1, 0],
    ]);
    expect((await http('GET', '/flavors/tether.small', undefined, '2.102')).body!.flavor).toMatchObject({ id: 'tether.small', ram: 128, swap: 0, extra_specs: {} });
    expect((await http('GET', '/flavors/nope')).status).toBe(404);
  });
});

describe('power actions', () => {
  it('stop, start, reboot with the openstack CLI and HTTP: the domain follows, the states are Nova\'s; a refused state is a 409', async () => {
    const vm = await runningServer(stack, 'api-power');
    expect((await openstack(cloud, ['server', 'stop', 'api-power'])).code).toBe(0);
    // right after the 202: the task is taken (powering-off) or already done
    const during = await serverOf(vm.uuid);
    expect([['active', 'powering-off'], ['stopped', null]]).toContainEqual([during['OS-EXT-STS:vm_state'], during['OS-EXT-STS:task_state']]);
    const stopped = await waitStatus(vm.uuid, 'SHUTOFF');
    expect(stopped).toMatchObject({ 'OS-EXT-STS:vm_state': 'stopped', 'OS-EXT-STS:task_state': null, 'OS-EXT-STS:power_state': 4 });
    expect((await stack.libvirt.lookupDomain(vm.uuid))?.active).toBe(false);

    const again = await http('POST', `/servers/${vm.uuid}/action`, { 'os-stop': null });
    expect(again).toMatchObject({ status: 409, body: { conflictingRequest: { code: 409, message: `Cannot 'stop' instance ${vm.uuid} while it is in vm_state stopped` } } });
    const soft = await http('POST', `/servers/${vm.uuid}/action`, { reboot: { type: 'SOFT' } });
    expect(soft.body!.conflictingRequest.message).toBe(`Cannot 'reboot' instance ${vm.uuid} while it is in vm_state stopped`);

    expect((await http('POST', `/servers/${vm.uuid}/action`, { 'os-start': null })).status).toBe(202);
    expect(await waitStatus(vm.uuid, 'ACTIVE')).toMatchObject({ 'OS-EXT-STS:power_state': 1, 'OS-EXT-STS:task_state': null });
    expect((await stack.libvirt.lookupDomain(vm.uuid))?.active).toBe(true);

    // --wait polls until the status is ACTIVE again (REBOOT meanwhile, as Nova shows it)
    expect((await openstack(cloud, ['server', 'reboot', '--wait', vm.uuid])).code).toBe(0);
    expect(await serverOf(vm.uuid)).toMatchObject({ status: 'ACTIVE', 'OS-EXT-STS:task_state': null });
    expect((await http('POST', `/servers/${vm.uuid}/action`, { reboot: { type: 'HARD' } })).status).toBe(202);
    await waitStatus(vm.uuid, 'ACTIVE');
    expect((await stack.libvirt.lookupDomain(vm.uuid))?.active).toBe(true);
    expect((await http('POST', `/servers/${vm.uuid}/action`, { reboot: { type: 'warm' } })).status).toBe(400);
  });

  it('shelve, shelve-offload and unshelve through the API', async () => {
    const vm = await runningServer(stack, 'api-shelve');
    const v = await volume(stack, 'api-shelve-v');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    expect((await http('POST', `/servers/${vm.uuid}/action`, { shelve: null })).status).toBe(202);
    await waitStatus(vm.uuid, 'SHELVED');
    expect((await http('POST', `/servers/${vm.uuid}/action`, { shelveOffload: null })).status).toBe(202);
    expect(await waitStatus(vm.uuid, 'SHELVED_OFFLOADED')).toMatchObject({ 'OS-EXT-SRV-ATTR:host': null, 'OS-EXT-STS:power_state': 0 });
    const refused = await http('POST', `/servers/${vm.uuid}/action`, { 'os-start': null });
    expect(refused.body!.conflictingRequest.message).toBe(`Instance ${vm.uuid} is not ready`);
    expect((await openstack(cloud, ['server', 'unshelve', vm.uuid])).code).toBe(0);
    await waitStatus(vm.uuid, 'ACTIVE');
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
  });
});

describe('create and delete', () => {
  it('openstack server create --volume --flavor --nic none boots from the volume; delete detaches it', async () => {
    const v = await volume(stack, 'api-boot-v');
    const created = await openstackJson<Record<string, unknown>>(cloud, [
      '--os-compute-api-version', '2.37', 'server', 'create', '--volume', v.id, '--flavor', 'tether.small', '--nic', 'none', '--wait', 'api-boot',
    ]);
    expect(created).toMatchObject({ name: 'api-boot', status: 'ACTIVE' });
    const id = created.id as string;
    const shown = await serverOf(id);
    expect(shown).toMatchObject({ image: '', flavor: { original_name: 'tether.small', ram: 128 }, 'os-extended-volumes:volumes_attached': [{ id: v.id, delete_on_termination: false }] });
    const [bdm] = await liveBdmsOfInstance(stack.db, id);
    expect(bdm).toMatchObject({ volumeId: v.id, bootIndex: 0, attachStatus: 'attached' });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
    expect(await stack.libvirt.getXml(id)).toContain("<memory unit='KiB'>131072</memory>");
    // the boot volume cannot be detached
    expect((await http('DELETE', `/servers/${id}/os-volume_attachments/${v.id}`)).status).toBe(400);

    expect((await openstack(cloud, ['server', 'delete', '--wait', id])).code).toBe(0);
    expect((await http('GET', `/servers/${id}`)).status).toBe(404);
    expect(await stack.libvirt.lookupDomain(id)).toBeNull();
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });

  it('POST /servers: Nova\'s body and refusals; a diskless server; DELETE honours delete_on_termination', async () => {
    const v = await volume(stack, 'api-dot-v');
    const bdm = { uuid: v.id, source_type: 'volume', destination_type: 'volume', boot_index: 0, delete_on_termination: true };
    const unknownFlavor = await http('POST', '/servers', { server: { name: 'x', flavorRef: 'huge', networks: 'none', block_device_mapping_v2: [bdm] } });
    expect(unknownFlavor).toMatchObject({ status: 400, body: { badRequest: { message: 'Invalid flavorRef provided.' } } });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');

    const res = await http('POST', '/servers', { server: { name: 'api-dot', imageRef: '', flavorRef: 'tether.tiny', networks: 'auto', block_device_mapping_v2: [bdm] } });
    expect(res.status).toBe(202);
    expect(Object.keys(res.body!.server).sort()).toEqual(['OS-DCF:diskConfig', 'id', 'links', 'security_groups']);
    expect(res.headers.get('location')).toBe(res.body!.server.links[0].href);
    const id = res.body!.server.id as string;
    await waitStatus(id, 'ACTIVE');
    const twice = await http('POST', '/servers', { server: { name: 'x', flavorRef: 'tether.tiny', networks: 'none', block_device_mapping_v2: [bdm] } });
    expect(twice.body!.badRequest.message).toMatch(/status must be 'available'. Currently in 'in-use'/);

    const diskless = await http('POST', '/servers', { server: { name: 'api-diskless', flavorRef: 'tether.medium', networks: 'none' } });
    expect(diskless.status).toBe(202);
    const d = await waitStatus(diskless.body!.server.id, 'ACTIVE');
    expect(d['os-extended-volumes:volumes_attached']).toEqual([]);

    expect((await http('DELETE', `/servers/${id}`)).status).toBe(204);
    await expect.poll(async () => (await http('GET', `/servers/${id}`)).status, { timeout: 60_000, interval: 200 }).toBe(404);
    await expect.poll(() => stack.blockStorage.getVolume(v.id).then(() => 'exists', () => 'deleted'), { timeout: 30_000 }).toBe('deleted');
    expect((await http('DELETE', `/servers/${diskless.body!.server.id}`)).status).toBe(204);
  });
});
