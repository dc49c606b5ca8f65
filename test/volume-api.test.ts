/**
 * The rest of the API around a server's volumes, through Debian's unmodified `openstack` CLI and
 * raw HTTP against the API served in-process over a real stack: Cinder's volume update, metadata and
 * attachments resource and online extend (os-extend, 3.42) on tether's own /v3; Nova's PUT
 * os-volume_attachments (2.85; swap refused unless the block storage migrates the volume) and
 * os-server-external-events (`volume-extended` grows the disk under the running domain).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { openstack, openstackJson, startTestApi, writeCloud, type Cloud, type RunningApi } from './support/clouds.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { extendWorkflowId } from '../src/domain/steps.ts';
import type { Instance, Volume } from '../src/domain/types.ts';

const GiB = 1024 ** 3;
vi.setConfig({ testTimeout: 180_000 });

let stack: TestStack;
let api: RunningApi;
let cloud: Cloud;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack();
  api = await startTestApi(stack);
  cloud = await writeCloud(api.url);
  vm = await runningServer(stack, 'vm-api');
});

afterAll(async () => {
  await cloud?.dispose();
  await api?.close();
  await stack?.stop();
});

async function http<T = unknown>(method: string, path: string, options: { body?: unknown; version?: string; headers?: Record<string, string> } = {}) {
  const versionHeader = path.startsWith('/v3') ? { 'OpenStack-API-Version': `volume ${options.version ?? '3.0'}` } : { 'OpenStack-API-Version': `compute ${options.version ?? '2.1'}` };
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { ...versionHeader, ...(options.body === undefined ? {} : { 'Content-Type': 'application/json' }), ...options.headers },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as T };
}

async function attached(name: string): Promise<Volume> {
  const v = await volume(stack, name);
  const { handle } = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
  await stack.service.awaitAttach(handle);
  return v;
}

async function capacity(instanceUuid: string, volumeId: string): Promise<number> {
  const disk = diskBySerial(await stack.libvirt.getXml(instanceUuid), volumeId);
  return (await stack.libvirt.blockInfo(instanceUuid, disk!.target!)).capacity;
}

describe('volume update and metadata (/v3)', () => {
  it('openstack volume set --name/--description/--property and volume unset --property', async () => {
    const v = await volume(stack, 'api-set');
    const set = await openstack(cloud, ['volume', 'set', 'api-set', '--name', 'api-renamed', '--description', ' a description ', '--property', 'team=storage', '--property', 'tier=gold']);
    expect(set.code, set.stderr).toBe(0);
    const shown = await openstackJson<{ name: string; description: string; properties: Record<string, string> }>(cloud, ['volume', 'show', v.id]);
    expect(shown).toMatchObject({ name: 'api-renamed', description: 'a description', properties: { team: 'storage', tier: 'gold' } });
    const unset = await openstack(cloud, ['volume', 'unset', 'api-renamed', '--property', 'team']);
    expect(unset.code, unset.stderr).toBe(0);
    expect((await stack.blockStorage.getVolume(v.id)).metadata).toEqual({ tier: 'gold' });
  });

  it("Cinder's metadata routes: merge, replace, one key, 404s, and from 3.15 the ETag with If-Match (412 when stale)", async () => {
    const v = await volume(stack, 'api-meta');
    const base = `/v3/volumes/${v.id}/metadata`;
    expect(await http('POST', base, { body: { metadata: { a: '1', b: '2' } } })).toMatchObject({ status: 200, body: { metadata: { a: '1', b: '2' } } });
    expect(await http('PUT', `${base}/a`, { body: { meta: { a: '10' } } })).toMatchObject({ status: 200, body: { meta: { a: '10' } } });
    expect(await http('PUT', `${base}/a`, { body: { meta: { c: '1' } } })).toMatchObject({ status: 400, body: { badRequest: { message: 'Request body and URI mismatch' } } });
    expect(await http('GET', `${base}/b`)).toMatchObject({ status: 200, body: { meta: { b: '2' } } });
    expect(await http('GET', `${base}/zz`)).toMatchObject({ status: 404, body: { itemNotFound: { message: `Volume ${v.id} has no metadata with key zz.` } } });
    expect((await http('DELETE', `${base}/zz`)).status).toBe(404);
    expect(await http('POST', base, { body: { metadata: { 'bad key!': 'x' } } })).toMatchObject({ status: 400 });

    const listed = await http<{ metadata: Record<string, string> }>('GET', base, { version: '3.15' });
    const etag = listed.headers.get('etag');
    expect(etag).toMatch(/^[0-9a-f]{32}$/);
    expect((await http('GET', base)).headers.get('etag'), 'no ETag before 3.15').toBeNull();
    expect(await http('PUT', base, { version: '3.15', headers: { 'If-Match': etag! }, body: { metadata: { only: 'this' } } })).toMatchObject({ status: 200, body: { metadata: { only: 'this' } } });
    expect((await http('PUT', base, { version: '3.15', headers: { 'If-Match': etag! }, body: { metadata: {} } })).status, 'stale ETag').toBe(412);
    expect((await stack.blockStorage.getVolume(v.id)).metadata).toEqual({ only: 'this' });
    expect(await http('DELETE', `${base}/only`)).toMatchObject({ status: 200 });
    expect(await http('PUT', `/v3/volumes/${v.id}`, { body: { volume: { display_name: 'via-v2-name', metadata: { x: 'y' } } } })).toMatchObject({
      status: 200,
      body: { volume: { name: 'via-v2-name', metadata: { x: 'y' } } },
    });
    expect((await http('PUT', `/v3/volumes/${v.id}`, { body: { volume: { size: 3 } } })).status, 'size is not updatable').toBe(400);
  });

  it('volume create keeps its metadata (openstack volume create --property)', async () => {
    const created = await openstackJson<{ id: string; properties: Record<string, string> }>(cloud, ['volume', 'create', '--size', '1', '--property', 'k=v', 'api-created']);
    expect(created.properties).toEqual({ k: 'v' });
  });
});

describe('the attachments resource (/v3, 3.27)', () => {
  it('openstack volume attachment list/show at 3.27; below it the routes do not exist', async () => {
    const v = await attached('api-att');
    const list = await openstackJson<Array<{ ID: string; 'Volume ID': string; 'Server ID': string; Status: string }>>(cloud, ['volume', 'attachment', 'list', '--os-volume-api-version', '3.27']);
    const mine = list.find((a) => a['Volume ID'] === v.id);
    expect(mine).toMatchObject({ 'Server ID': vm.uuid, Status: 'attached' });
    const shown = await openstackJson<Record<string, unknown>>(cloud, ['volume', 'attachment', 'show', mine!.ID, '--os-volume-api-version', '3.27']);
    expect(shown).toMatchObject({ ID: mine!.ID, 'Volume ID': v.id, 'Instance ID': vm.uuid, Status: 'attached', 'Attach Mode': 'rw' });
    expect(String(shown['Attached At'])).toMatch(/^\d{4}-\d\d-\d\dT/);

    const filtered = await http<{ attachments: unknown[] }>('GET', `/v3/attachments?volume_id=${v.id}`, { version: '3.27' });
    expect(filtered.body.attachments).toEqual([{ id: mine!.ID, status: 'attached', instance: vm.uuid, volume_id: v.id }]);
    const detail = await http<{ attachments: Array<{ connection_info: Record<string, unknown> }> }>('GET', `/v3/attachments/detail?volume_id=${v.id}`, { version: '3.27' });
    expect(detail.body.attachments[0]!.connection_info).toMatchObject({ driver_volume_type: 'file', data: { format: 'qcow2', volume_id: v.id } });
    expect((await http('GET', '/v3/attachments', { version: '3.26' })).status).toBe(404);
    expect(await http('GET', `/v3/attachments/${crypto.randomUUID()}`, { version: '3.27' })).toMatchObject({ status: 404, body: { itemNotFound: { message: expect.stringMatching(/^Volume attachment could not be found/) } } });
  });
});

describe('online extend through /v3 (os-extend)', () => {
  it('openstack volume set --size on an in-use volume at 3.42: the running domain sees the new size', async () => {
    const v = await attached('api-extend');
    const set = await openstack(cloud, ['--os-volume-api-version', '3.42', 'volume', 'set', '--size', '2', 'api-extend']);
    expect(set.code, set.stderr).toBe(0);
    await expect.poll(async () => (await stack.blockStorage.getVolume(v.id)).status, { timeout: 60_000, interval: 200 }).toBe('in-use');
    expect((await stack.blockStorage.getVolume(v.id)).size).toBe(2);
    expect(await capacity(vm.uuid, v.id)).toBe(2 * GiB);
    // the saga's last step records the size on the BDM (after the volume is in-use again)
    await expect.poll(async () => (await liveBdm(stack.db, vm.uuid, v.id))?.volumeSize, { timeout: 30_000, interval: 200 }).toBe(2);
  });

  it("Cinder's status codes and messages: below 3.42 an in-use volume, a size not larger, an unknown action", async () => {
    const v = await attached('api-extend-refused');
    const action = `/v3/volumes/${v.id}/action`;
    expect(await http('POST', action, { version: '3.41', body: { 'os-extend': { new_size: 2 } } })).toEqual(
      expect.objectContaining({ status: 400, body: { badRequest: { code: 400, message: `Invalid volume: Volume ${v.id} status must be '{'status': 'available'}' to extend, currently in-use.` } } }),
    );
    expect(await http('POST', action, { version: '3.42', body: { 'os-extend': { new_size: '1' } } })).toMatchObject({
      status: 400,
      body: { badRequest: { message: 'Invalid input received: New size for extend must be greater than current size. (current: 1, extended: 1).' } },
    });
    expect((await http('POST', action, { version: '3.42', body: { 'os-extend': { new_size: 'two' } } })).status).toBe(400);
    expect(await http('POST', action, { body: { 'os-reset_status': { status: 'available' } } })).toMatchObject({ status: 400, body: { badRequest: { message: 'There is no such action: os-reset_status' } } });
    expect((await http('POST', `/v3/volumes/${crypto.randomUUID()}/action`, { body: { 'os-extend': { new_size: 2 } } })).status).toBe(404);
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', size: 1 });
    // an available volume at any version: 202, grown at once
    const free = await volume(stack, 'api-extend-free');
    expect((await http('POST', `/v3/volumes/${free.id}/action`, { body: { 'os-extend': { new_size: 3 } } })).status).toBe(202);
    expect(await stack.blockStorage.getVolume(free.id)).toMatchObject({ status: 'available', size: 3 });
  });
});

describe('PUT os-volume_attachments (2.85)', () => {
  it('openstack server volume update --delete-on-termination / --preserve-on-termination at 2.85', async () => {
    const v = await attached('api-dot');
    const on = await openstack(cloud, ['--os-compute-api-version', '2.85', 'server', 'volume', 'update', '--delete-on-termination', 'vm-api', v.id]);
    expect(on.code, on.stderr).toBe(0);
    expect((await liveBdm(stack.db, vm.uuid, v.id))?.deleteOnTermination).toBe(true);
    const listed = await openstackJson<Array<{ 'Volume ID': string; 'Delete On Termination?': boolean }>>(cloud, ['--os-compute-api-version', '2.85', 'server', 'volume', 'list', 'vm-api']);
    expect(listed.find((a) => a['Volume ID'] === v.id)?.['Delete On Termination?']).toBe(true);
    const off = await openstack(cloud, ['--os-compute-api-version', '2.85', 'server', 'volume', 'update', '--preserve-on-termination', 'vm-api', v.id]);
    expect(off.code, off.stderr).toBe(0);
    expect((await liveBdm(stack.db, vm.uuid, v.id))?.deleteOnTermination).toBe(false);
  });

  it("Nova's rules: below 2.85 a field other than volumeId is a 400; immutable fields; not attached; a swap is a 409 unless the volume migrates", async () => {
    const v = await attached('api-put');
    const other = await volume(stack, 'api-put-other');
    const url = `/v2.1/servers/${vm.uuid}/os-volume_attachments/${v.id}`;
    expect((await http('PUT', url, { version: '2.84', body: { volumeAttachment: { volumeId: v.id, delete_on_termination: true } } })).status).toBe(400);
    expect(await http('PUT', url, { version: '2.85', body: { volumeAttachment: { volumeId: v.id, delete_on_termination: 'yes' } } })).toMatchObject({ status: 202 });
    expect((await liveBdm(stack.db, vm.uuid, v.id))?.deleteOnTermination).toBe(true);
    expect(await http('PUT', url, { version: '2.85', body: { volumeAttachment: { volumeId: v.id, device: '/dev/sdz' } } })).toMatchObject({
      status: 400,
      body: { badRequest: { message: 'The device property is not mutable' } },
    });
    expect(await http('PUT', url, { version: '2.85', body: { volumeAttachment: { volumeId: v.id, tag: 'x' } } })).toMatchObject({ status: 400, body: { badRequest: { message: 'The tag property is not mutable' } } });
    expect(await http('PUT', `/v2.1/servers/${vm.uuid}/os-volume_attachments/${other.id}`, { version: '2.85', body: { volumeAttachment: { volumeId: other.id, delete_on_termination: true } } })).toMatchObject({
      status: 404,
      body: { itemNotFound: { message: `No volume Block Device Mapping with id ${other.id}.` } },
    });
    for (const version of ['2.1', '2.85']) {
      expect(await http('PUT', url, { version, body: { volumeAttachment: { volumeId: other.id } } })).toMatchObject({
        status: 409,
        body: { conflictingRequest: { message: `volume ${v.id} is not migrating; this API should only be called by Cinder` } },
      });
    }
    expect((await liveBdm(stack.db, vm.uuid, v.id))?.volumeId).toBe(v.id);
  });
});

describe('os-server-external-events', () => {
  const url = '/v2.1/os-server-external-events';

  it('volume-extended (2.51): 200 when every event is accepted, and the disk grows to the size the block storage reports', async () => {
    const v = await attached('api-event');
    // the block storage says the volume grew (as Cinder does before it tells Nova); QEMU grows the qcow2 itself
    await stack.db.query(`UPDATE volumes SET size_gb = 2 WHERE id = $1`, [v.id]);
    const res = await http<{ events: unknown[] }>('POST', url, { version: '2.51', body: { events: [{ name: 'volume-extended', server_uuid: vm.uuid, tag: v.id }] } });
    expect(res).toMatchObject({ status: 200, body: { events: [{ name: 'volume-extended', server_uuid: vm.uuid, tag: v.id, status: 'completed', code: 200 }] } });
    const result = await stack.service.awaitExtend(stack.client.workflow.getHandle(extendWorkflowId(vm.uuid, v.id)));
    expect(result).toMatchObject({ size: 2, live: true, capacity: 2 * GiB });
    expect(await capacity(vm.uuid, v.id)).toBe(2 * GiB);
  });

  it("Nova's per-event codes: 207 with 404 (unknown server) and 400 (no tag) beside a 200; 207 when none is accepted; the names a version takes", async () => {
    const unknown = crypto.randomUUID();
    const mixed = await http<{ events: Array<{ code: number; status: string }> }>('POST', url, {
      version: '2.89',
      body: { events: [{ name: 'network-changed', server_uuid: vm.uuid }, { name: 'volume-extended', server_uuid: unknown, tag: crypto.randomUUID() }, { name: 'volume-extended', server_uuid: vm.uuid }] },
    });
    expect(mixed.status).toBe(207);
    expect(mixed.body.events.map((e) => [e.code, e.status])).toEqual([[200, 'completed'], [404, 'failed'], [400, 'failed']]);
    const none = await http<{ events: Array<{ code: number }> }>('POST', url, { version: '2.89', body: { events: [{ name: 'network-changed', server_uuid: unknown }] } });
    expect(none).toMatchObject({ status: 207, body: { events: [{ code: 404, status: 'failed' }] } });
    expect((await http('POST', url, { version: '2.50', body: { events: [{ name: 'volume-extended', server_uuid: vm.uuid, tag: crypto.randomUUID() }] } })).status).toBe(400);
    expect((await http('POST', url, { version: '2.89', body: { events: [] } })).status).toBe(400);
  });
});

describe('/openapi.json', () => {
  it('documents every new route', async () => {
    const { body } = await http<{ paths: Record<string, Record<string, unknown>> }>('GET', '/openapi.json');
    const routes = Object.entries(body.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`));
    expect(routes).toEqual(
      expect.arrayContaining([
        'PUT /v3/volumes/{volume_id}',
        'POST /v3/volumes/{volume_id}/action',
        'GET /v3/volumes/{volume_id}/metadata',
        'POST /v3/volumes/{volume_id}/metadata',
        'PUT /v3/volumes/{volume_id}/metadata',
        'GET /v3/volumes/{volume_id}/metadata/{key}',
        'PUT /v3/volumes/{volume_id}/metadata/{key}',
        'DELETE /v3/volumes/{volume_id}/metadata/{key}',
        'GET /v3/attachments',
        'GET /v3/attachments/detail',
        'GET /v3/attachments/{attachment_id}',
        'PUT /v2.1/servers/{server_id}/os-volume_attachments/{volume_id}',
        'POST /v2.1/os-server-external-events',
      ]),
    );
  });
});
