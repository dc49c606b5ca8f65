/**
 * The real OpenStack clients from Debian (python3-openstackclient 6.0.0, python3-openstacksdk 0.101)
 * against the API, served in-process over a real stack, with a clouds.yaml of `auth_type: none`.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { openstack, openstackJson, python, startTestApi, writeCloud, type Cloud, type RunningApi } from './support/clouds.ts';
import { detachWorkflowId } from '../src/domain/steps.ts';
import type { Instance, VolumeStatus } from '../src/domain/types.ts';

let stack: TestStack;
let api: RunningApi;
let cloud: Cloud;

const UNKNOWN = '00000000-0000-4000-8000-000000000000';

// each CLI run starts a Python interpreter (1-4 s on these machines); some tests make several
vi.setConfig({ testTimeout: 180_000 });

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

async function volumeStatus(id: string, status: VolumeStatus): Promise<void> {
  await expect.poll(async () => (await stack.blockStorage.getVolume(id)).status, { timeout: 30_000, interval: 200 }).toBe(status);
}

describe('openstack server add volume', () => {
  let vm: Instance;
  beforeAll(async () => {
    vm = await runningServer(stack, 'osc-add');
  });

  it('without --device: the host picks the next free device', async () => {
    const v = await volume(stack, 'osc-add-1');
    const shown = await openstackJson(cloud, ['server', 'add', 'volume', 'osc-add', 'osc-add-1']);
    expect(shown).toEqual({ ID: v.id, 'Server ID': vm.uuid, 'Volume ID': v.id, Device: '/dev/sdb', Tag: null, 'Delete On Termination': false });
    await volumeStatus(v.id, 'in-use');
  });

  it('with --device', async () => {
    const v = await volume(stack, 'osc-add-2');
    const shown = await openstackJson<Record<string, unknown>>(cloud, ['server', 'add', 'volume', vm.uuid, v.id, '--device', '/dev/sdd']);
    expect(shown).toMatchObject({ 'Volume ID': v.id, Device: '/dev/sdd' });
    await volumeStatus(v.id, 'in-use');
  });

  it('with --tag and --enable-delete-on-termination', async () => {
    const v = await volume(stack, 'osc-add-3');
    const shown = await openstackJson(cloud, ['server', 'add', 'volume', 'osc-add', 'osc-add-3', '--tag', 'data', '--enable-delete-on-termination']);
    expect(shown).toEqual({ ID: v.id, 'Server ID': vm.uuid, 'Volume ID': v.id, Device: '/dev/sdc', Tag: 'data', 'Delete On Termination': true });
    await volumeStatus(v.id, 'in-use');
    const bdm = (await stack.service.listAttachments(vm.uuid)).bdms.find((b) => b.volumeId === v.id);
    expect(bdm).toMatchObject({ tag: 'data', deleteOnTermination: true });
  });

  it('shows the API refusals with their messages', async () => {
    const v = await volume(stack, 'osc-add-bad');
    const badDevice = await openstack(cloud, ['server', 'add', 'volume', 'osc-add', 'osc-add-bad', '--device', 'vdb']);
    expect(badDevice.code).not.toBe(0);
    expect(badDevice.stderr).toMatch(/BadRequestException: 400: .*The supplied device path \(vdb\) is invalid\./);

    const inUse = await openstack(cloud, ['server', 'add', 'volume', 'osc-add', 'osc-add-bad', '--device', '/dev/sdb']);
    expect(inUse.stderr).toMatch(/ConflictException: 409: .*The supplied device path \(\/dev\/sdb\) is in use\./);

    const twice = await openstack(cloud, ['server', 'add', 'volume', 'osc-add', 'osc-add-1']);
    expect(twice.stderr).toMatch(/BadRequestException: 400: .*already attached to instance/);

    // names the API does not know: a 404 on GET /servers/{name}, then an empty search by name
    expect((await openstack(cloud, ['server', 'add', 'volume', 'no-such-server', 'osc-add-bad'])).stderr).toMatch(/No Server found for no-such-server/);
    expect((await openstack(cloud, ['server', 'add', 'volume', 'osc-add', 'no-such-volume'])).stderr).toMatch(/No Volume found for no-such-volume/);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });
});

describe('openstack server volume list', () => {
  let vm: Instance;
  let volumeId: string;
  beforeAll(async () => {
    vm = await runningServer(stack, 'osc-list');
    const v = await volume(stack, 'osc-list-1');
    volumeId = v.id;
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id, device: '/dev/sdb', tag: 'logs', deleteOnTermination: true });
    await stack.service.awaitAttach(started.handle);
  });

  it.each([
    ['2.1', ['ID', 'Device', 'Server ID', 'Volume ID']],
    ['2.70', ['ID', 'Device', 'Server ID', 'Volume ID', 'Tag']],
    ['2.79', ['ID', 'Device', 'Server ID', 'Volume ID', 'Tag', 'Delete On Termination?']],
    ['2.89', ['Device', 'Server ID', 'Volume ID', 'Tag', 'Delete On Termination?', 'Attachment ID', 'BlockDeviceMapping UUID']],
    // Debian's novaclient goes up to 2.92, below tether's newest (2.104): its newest works as 2.89
    ['2.92', ['Device', 'Server ID', 'Volume ID', 'Tag', 'Delete On Termination?', 'Attachment ID', 'BlockDeviceMapping UUID']],
  ])('at %s shows the columns of that microversion', async (version, columns) => {
    const rows = await openstackJson<Array<Record<string, unknown>>>(cloud, ['--os-compute-api-version', version, 'server', 'volume', 'list', 'osc-list']);
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]!)).toEqual(columns);
    const bdm = (await stack.service.listAttachments(vm.uuid)).bdms[0]!;
    const all: Record<string, unknown> = {
      ID: volumeId,
      Device: '/dev/sdb',
      'Server ID': vm.uuid,
      'Volume ID': volumeId,
      Tag: 'logs',
      'Delete On Termination?': true,
      'Attachment ID': bdm.attachmentId,
      'BlockDeviceMapping UUID': bdm.uuid,
    };
    expect(rows[0]).toEqual(Object.fromEntries(columns.map((c) => [c, all[c]])));
  });

  it('beyond its own newest (2.92) the client refuses before asking: the 406 of the API past 2.104 is seen through openstacksdk below', async () => {
    const r = await openstack(cloud, ['--os-compute-api-version', '2.105', 'server', 'volume', 'list', 'osc-list']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/versions supported by client: 2\.1 - 2\.92/);
  });
});

describe('openstack server remove volume [detach]', () => {
  it('detaches: the volume becomes available and leaves the list', async () => {
    const vm = await runningServer(stack, 'osc-remove');
    const v = await volume(stack, 'osc-remove-1');
    await openstackJson(cloud, ['server', 'add', 'volume', 'osc-remove', 'osc-remove-1']);
    await volumeStatus(v.id, 'in-use');
    const r = await openstack(cloud, ['server', 'remove', 'volume', 'osc-remove', 'osc-remove-1']);
    expect(r).toMatchObject({ code: 0, stdout: '' });
    await stack.client.workflow.getHandle(detachWorkflowId(vm.uuid, v.id)).result();
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    expect(await openstackJson(cloud, ['server', 'volume', 'list', vm.uuid])).toEqual([]);
  });
});

describe('openstack volume create / list / show / delete', () => {
  it('manages volumes of the embedded volume service', async () => {
    const created = await openstackJson<Record<string, unknown>>(cloud, ['volume', 'create', '--size', '2', 'osc-vol']);
    expect(created).toMatchObject({ name: 'osc-vol', size: 2, status: 'available', availability_zone: 'nova', attachments: [], multiattach: false, bootable: 'false' });
    const id = created.id as string;

    const listed = await openstackJson<Array<Record<string, unknown>>>(cloud, ['volume', 'list']);
    expect(listed).toContainEqual({ ID: id, Name: 'osc-vol', Status: 'available', Size: 2, 'Attached to': [] });

    const shown = await openstackJson<Record<string, unknown>>(cloud, ['volume', 'show', 'osc-vol']);
    expect(shown).toMatchObject({ id, name: 'osc-vol', status: 'available', size: 2 });

    expect(await openstack(cloud, ['volume', 'delete', 'osc-vol'])).toMatchObject({ code: 0 });
    expect((await openstack(cloud, ['volume', 'show', id])).stderr).toMatch(/No volume with a name or ID of/);
  });

  it('shows the attachment of an attached volume, with the server name in the list', async () => {
    const vm = await runningServer(stack, 'osc-vol-vm');
    const v = await volume(stack, 'osc-vol-attached');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    const shown = await openstackJson<{ status: string; attachments: Array<Record<string, unknown>> }>(cloud, ['volume', 'show', v.id]);
    expect(shown.status).toBe('in-use');
    expect(shown.attachments).toEqual([expect.objectContaining({ server_id: vm.uuid, volume_id: v.id, device: '/dev/sdb', host_name: stack.host })]);
    const listed = await openstack(cloud, ['volume', 'list', '-f', 'value', '-c', 'Name', '-c', 'Attached to']);
    expect(listed.stdout).toMatch(/osc-vol-attached .*'server_id': '[0-9a-f-]{36}'/);
    const table = await openstack(cloud, ['volume', 'list']);
    expect(table.stdout).toMatch(/osc-vol-attached .*Attached to osc-vol-vm on \/dev\/sdb/);
  });
});

const SDK_ATTACH = `
import json, sys
import openstack
conn = openstack.connect()
server = conn.get_server(sys.argv[1])
volume = conn.get_volume(sys.argv[2])
out = {}
attachment = conn.attach_volume(server, volume, wait=True, timeout=60)
after = conn.get_volume(volume.id)
out['attached'] = {'device': attachment.device, 'status': after.status, 'attachments': after.attachments}
if 'detach' in sys.argv[3:]:
    conn.detach_volume(server, after, wait=True, timeout=60)
    out['detached'] = conn.get_volume(volume.id).status
print(json.dumps(out))
`;

const SDK_ERRORS = `
import json, sys
import openstack
from openstack import exceptions
conn = openstack.connect()
server, volume = sys.argv[1], sys.argv[2]
unknown = '${UNKNOWN}'

def outcome(call):
    try:
        call()
        return {'ok': True}
    except exceptions.HttpException as e:
        return {'status': e.status_code, 'message': e.details}

def raw(path, body, version):
    r = conn.compute.post(path, json=body, microversion=version, raise_exc=False)
    return {'status': r.status_code, 'body': r.json(), 'version': r.headers.get('OpenStack-API-Version')}

print(json.dumps({
    'unknownServer': outcome(lambda: conn.compute.create_volume_attachment(unknown, volumeId=volume)),
    'unknownVolume': outcome(lambda: conn.compute.create_volume_attachment(server, volumeId=unknown)),
    'badDevice': outcome(lambda: conn.compute.create_volume_attachment(server, volumeId=volume, device='/dev/../sda')),
    'tagAt248': raw('/servers/%s/os-volume_attachments' % server, {'volumeAttachment': {'volumeId': volume, 'tag': 'x'}}, '2.48'),
    'at2105': raw('/servers/%s/os-volume_attachments' % server, {'volumeAttachment': {'volumeId': volume}}, '2.105'),
}))
`;

describe('openstacksdk cloud layer', () => {
  it('attach_volume(wait=True) returns once the volume is in-use', async () => {
    const vm = await runningServer(stack, 'sdk-attach');
    const v = await volume(stack, 'sdk-attach-1');
    const r = await python(cloud, SDK_ATTACH, ['sdk-attach', 'sdk-attach-1']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.attached).toEqual({
      device: '/dev/sdb',
      status: 'in-use',
      attachments: [expect.objectContaining({ server_id: vm.uuid, volume_id: v.id, device: '/dev/sdb', attachment_id: expect.any(String) })],
    });
  });

  it('[detach] detach_volume(wait=True) returns once the volume is available', async () => {
    await runningServer(stack, 'sdk-detach');
    const v = await volume(stack, 'sdk-detach-1');
    const r = await python(cloud, SDK_ATTACH, ['sdk-detach', 'sdk-detach-1', 'detach']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ attached: { status: 'in-use' }, detached: 'available' });
    expect((await stack.blockStorage.getVolume(v.id)).attachments).toEqual([]);
  });

  it('sees the API refusals with their status and message', async () => {
    const vm = await runningServer(stack, 'sdk-errors');
    const v = await volume(stack, 'sdk-errors-1');
    const r = await python(cloud, SDK_ERRORS, [vm.uuid, v.id]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      unknownServer: { status: 404, message: `Instance ${UNKNOWN} could not be found.` },
      unknownVolume: { status: 404, message: `Volume ${UNKNOWN} could not be found.` },
      badDevice: { status: 400, message: 'The supplied device path (/dev/../sda) is invalid.' },
      tagAt248: {
        status: 400,
        body: { badRequest: { code: 400, message: 'Invalid input for field/attribute volumeAttachment. Additional properties are not allowed at microversion 2.48: tag (2.49).' } },
        version: 'compute 2.48',
      },
      at2105: {
        status: 406,
        body: { computeFault: { code: 406, message: 'Version 2.105 is not supported by the API. Minimum is 2.1 and maximum is 2.104.' } },
        version: null,
      },
    });
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });
});
