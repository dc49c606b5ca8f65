/**
 * Every route over HTTP (fastify inject) against a real stack: servers, volume attachments with
 * their microversion rules, block storage, health. Attaches run their real workflows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { buildTestApi } from './support/clouds.ts';
import type { ApiServer } from '../src/api/server.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import { setInstanceState } from '../src/db/instances.ts';
import type { Instance, Volume } from '../src/domain/types.ts';

let stack: TestStack;
let api: ApiServer;
let vm: Instance;

const UNKNOWN = '00000000-0000-4000-8000-000000000000';
const compute = (version?: string): Record<string, string> => (version ? { 'openstack-api-version': `compute ${version}` } : {});
const volumeApi = (version?: string): Record<string, string> => (version ? { 'openstack-api-version': `volume ${version}` } : {});

function attach(serverId: string, body: Record<string, unknown>, version?: string) {
  return api.inject({ method: 'POST', url: `/v2.1/servers/${serverId}/os-volume_attachments`, headers: compute(version), payload: { volumeAttachment: body } });
}

/** Waits for the attach workflow of (server, volume) to finish. */
async function attached(serverId: string, volumeId: string): Promise<void> {
  await stack.client.workflow.getHandle(attachWorkflowId(serverId, volumeId)).result();
}

beforeAll(async () => {
  stack = await startTestStack();
  api = await buildTestApi(stack);
  vm = await runningServer(stack, 'vm-http');
});

afterAll(async () => {
  await api?.close();
  await stack?.stop();
});

describe('servers', () => {
  it('lists servers as id, name and links, filtered by exact name', async () => {
    const all = await api.inject({ url: '/v2.1/servers' });
    expect(all.statusCode).toBe(200);
    expect(all.json().servers).toContainEqual({ id: vm.uuid, name: 'vm-http', links: expect.arrayContaining([expect.objectContaining({ rel: 'self' })]) });
    const named = await api.inject({ url: '/v2.1/servers?name=vm-http' });
    expect(named.json().servers.map((s: { id: string }) => s.id)).toEqual([vm.uuid]);
    const none = await api.inject({ url: '/v2.1/servers?name=vm-htt' });
    expect(none.json().servers).toEqual([]);
  });

  it('shows a server with the fields clients read', async () => {
    const r = await api.inject({ url: `/v2.1/servers/${vm.uuid}`, headers: compute('2.73') });
    expect(r.statusCode).toBe(200);
    expect(r.json().server).toMatchObject({
      id: vm.uuid,
      name: 'vm-http',
      status: 'ACTIVE',
      tenant_id: 'tether',
      user_id: 'tether',
      image: '',
      addresses: {},
      metadata: {},
      flavor: { vcpus: 1, ram: 64, original_name: 'tether.tiny' },
      'OS-EXT-STS:vm_state': 'active',
      'OS-EXT-STS:task_state': null,
      'OS-EXT-STS:power_state': 1,
      'OS-EXT-SRV-ATTR:host': stack.host,
      'OS-EXT-AZ:availability_zone': 'nova',
      'os-extended-volumes:volumes_attached': expect.any(Array),
      locked: false,
      locked_reason: null,
    });
    expect(r.json().server.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('keeps the fields of older microversions (2.1: flavor by id, no locked)', async () => {
    const server = (await api.inject({ url: `/v2.1/servers/${vm.uuid}` })).json().server;
    expect(server.flavor).toEqual({ id: 'tether.tiny', links: expect.any(Array) });
    expect(server).not.toHaveProperty('locked');
    expect(server).not.toHaveProperty('tags');
  });

  it('shows details in /servers/detail, also under a project id', async () => {
    for (const url of ['/v2.1/servers/detail?name=vm-http', '/v2.1/0123456789abcdef0123456789abcdef/servers/detail?name=vm-http']) {
      const r = await api.inject({ url });
      expect(r.statusCode).toBe(200);
      expect(r.json().servers).toEqual([expect.objectContaining({ id: vm.uuid, status: 'ACTIVE' })]);
    }
  });

  it('answers 404 for an unknown id and for a name (clients then search by name)', async () => {
    for (const ref of [UNKNOWN, 'vm-http']) {
      const r = await api.inject({ url: `/v2.1/servers/${ref}` });
      expect(r.statusCode).toBe(404);
      expect(r.json()).toEqual({ itemNotFound: { code: 404, message: `Instance ${ref} could not be found.` } });
    }
  });

  it('maps vm_state to status (stopped → SHUTOFF)', async () => {
    const other = await runningServer(stack, 'vm-state');
    await setInstanceState(stack.db, other.uuid, { vmState: 'stopped', taskState: null });
    const server = (await api.inject({ url: `/v2.1/servers/${other.uuid}` })).json().server;
    expect(server).toMatchObject({ status: 'SHUTOFF', 'OS-EXT-STS:vm_state': 'stopped', 'OS-EXT-STS:power_state': 4 });
  });
});

describe('attach (POST os-volume_attachments)', () => {
  it('answers 200 with the reserved device; the attach then completes', async () => {
    const v = await volume(stack, 'http-a');
    const r = await attach(vm.uuid, { volumeId: v.id, device: null });
    expect(r.statusCode).toBe(200);
    expect(r.headers['openstack-api-version']).toBe('compute 2.1');
    expect(r.json()).toEqual({ volumeAttachment: { id: v.id, serverId: vm.uuid, volumeId: v.id, device: expect.stringMatching(/^\/dev\/sd[b-z]$/) } });
    await attached(vm.uuid, v.id);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
    const server = (await api.inject({ url: `/v2.1/servers/${vm.uuid}`, headers: compute('2.3') })).json().server;
    expect(server['os-extended-volumes:volumes_attached']).toContainEqual({ id: v.id, delete_on_termination: false });
  });

  it('takes the requested device, tag and delete_on_termination and answers them by microversion', async () => {
    const target = await runningServer(stack, 'vm-fields');
    const v = await volume(stack, 'http-fields');
    const r = await attach(target.uuid, { volumeId: v.id, device: '/dev/sdf', tag: 'db', delete_on_termination: true }, '2.89');
    expect(r.statusCode).toBe(200);
    // POST never carries the 2.89 fields
    expect(r.json().volumeAttachment).toEqual({ id: v.id, serverId: target.uuid, volumeId: v.id, device: '/dev/sdf', tag: 'db', delete_on_termination: true });
    await attached(target.uuid, v.id);

    const list = async (version?: string) =>
      (await api.inject({ url: `/v2.1/servers/${target.uuid}/os-volume_attachments`, headers: compute(version) })).json().volumeAttachments;
    expect(await list()).toEqual([{ id: v.id, serverId: target.uuid, volumeId: v.id, device: '/dev/sdf' }]);
    expect(await list('2.70')).toEqual([{ id: v.id, serverId: target.uuid, volumeId: v.id, device: '/dev/sdf', tag: 'db' }]);
    expect(await list('2.79')).toEqual([{ id: v.id, serverId: target.uuid, volumeId: v.id, device: '/dev/sdf', tag: 'db', delete_on_termination: true }]);
    const bdm = (await stack.service.listAttachments(target.uuid)).bdms[0]!;
    const at289 = { serverId: target.uuid, volumeId: v.id, device: '/dev/sdf', tag: 'db', delete_on_termination: true, attachment_id: bdm.attachmentId, bdm_uuid: bdm.uuid };
    expect(await list('2.89')).toEqual([at289]);

    const one = await api.inject({ url: `/v2.1/servers/${target.uuid}/os-volume_attachments/${v.id}`, headers: compute('2.89') });
    expect(one.json()).toEqual({ volumeAttachment: at289 });
    const old = await api.inject({ url: `/v2.1/servers/${target.uuid}/os-volume_attachments/${v.id}` });
    expect(old.json()).toEqual({ volumeAttachment: { id: v.id, serverId: target.uuid, volumeId: v.id, device: '/dev/sdf' } });
  });

  it('pages the list with limit and offset', async () => {
    const target = await runningServer(stack, 'vm-pages');
    for (const name of ['page-1', 'page-2', 'page-3']) {
      const v = await volume(stack, name);
      expect((await attach(target.uuid, { volumeId: v.id })).statusCode).toBe(200);
    }
    const page = await api.inject({ url: `/v2.1/servers/${target.uuid}/os-volume_attachments?limit=1&offset=1` });
    expect(page.json().volumeAttachments).toEqual([expect.objectContaining({ device: '/dev/sdc' })]);
  });

  it.each([
    ['tag', { tag: 'x' }, '2.48', 'tag (2.49)'],
    ['delete_on_termination', { delete_on_termination: true }, '2.78', 'delete_on_termination (2.79)'],
  ])('refuses %s below its microversion with a 400', async (_field, extra, version, named) => {
    const v = await volume(stack, `http-old-${version}`);
    const r = await attach(vm.uuid, { volumeId: v.id, ...extra }, version);
    expect(r.statusCode).toBe(400);
    expect(r.json().badRequest.message).toBe(
      `Invalid input for field/attribute volumeAttachment. Additional properties are not allowed at microversion ${version}: ${named}.`,
    );
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
  });

  it('answers the service refusals with their status and message', async () => {
    const v = await volume(stack, 'http-refusals');
    const cases: Array<[string, Record<string, unknown>, number, string, string]> = [
      [UNKNOWN, { volumeId: v.id }, 404, 'itemNotFound', `Instance ${UNKNOWN} could not be found.`],
      ['vm-http', { volumeId: v.id }, 404, 'itemNotFound', 'Instance vm-http could not be found.'],
      [vm.uuid, { volumeId: UNKNOWN }, 404, 'itemNotFound', `Volume ${UNKNOWN} could not be found.`],
      [vm.uuid, { volumeId: v.id, device: 'vdb' }, 400, 'badRequest', 'The supplied device path (vdb) is invalid.'],
      [vm.uuid, { volumeId: v.id, device: '/dev/sdb' }, 409, 'conflictingRequest', 'The supplied device path (/dev/sdb) is in use.'],
    ];
    for (const [server, body, code, fault, message] of cases) {
      const r = await attach(server, body);
      expect({ status: r.statusCode, body: r.json() }).toEqual({ status: code, body: { [fault]: { code, message } } });
    }
  });

  it('refuses a volume that is already attached (400) and a server in a state that forbids it (409)', async () => {
    const v = await volume(stack, 'http-twice');
    expect((await attach(vm.uuid, { volumeId: v.id })).statusCode).toBe(200);
    await attached(vm.uuid, v.id);
    const again = await attach(vm.uuid, { volumeId: v.id });
    expect(again.statusCode).toBe(400);
    expect(again.json().badRequest.message).toBe(`Invalid volume: volume ${v.id} already attached to instance ${vm.uuid}.`);

    const busy = await runningServer(stack, 'vm-busy');
    await setInstanceState(stack.db, busy.uuid, { vmState: 'error', taskState: null });
    const w = await volume(stack, 'http-error-state');
    const r = await attach(busy.uuid, { volumeId: w.id });
    expect(r.statusCode).toBe(409);
    expect(r.json().conflictingRequest.message).toBe(`Cannot 'attach_volume' instance ${busy.uuid} while it is in vm_state error`);
  });

  it('refuses a shelved server below 2.20 with a 409', async () => {
    const shelved = await runningServer(stack, 'vm-shelved');
    await setInstanceState(stack.db, shelved.uuid, { vmState: 'shelved', taskState: null });
    const v = await volume(stack, 'http-shelved');
    const r = await attach(shelved.uuid, { volumeId: v.id }, '2.19');
    expect(r.statusCode).toBe(409);
    expect(r.json().conflictingRequest.message).toBe(`Cannot 'attach_volume' instance ${shelved.uuid} while it is in vm_state shelved`);
    const d = await api.inject({ method: 'DELETE', url: `/v2.1/servers/${shelved.uuid}/os-volume_attachments/${v.id}`, headers: compute('2.19') });
    expect(d.statusCode).toBe(409);
  });

  it('attaches to a shelved-offloaded server from 2.20: no device yet, no tag', async () => {
    const target = await runningServer(stack, 'vm-offloaded');
    await stack.service.shelveServer(target.uuid);
    await stack.service.shelveOffloadServer(target.uuid);
    const server = (await api.inject({ url: `/v2.1/servers/${target.uuid}` })).json().server;
    expect(server).toMatchObject({ status: 'SHELVED_OFFLOADED', 'OS-EXT-SRV-ATTR:host': null });

    const v = await volume(stack, 'http-offloaded');
    expect((await attach(target.uuid, { volumeId: v.id }, '2.19')).statusCode).toBe(409);
    const tagged = await attach(target.uuid, { volumeId: v.id, tag: 'x' }, '2.49');
    expect(tagged.statusCode).toBe(400);
    expect(tagged.json().badRequest.message).toMatch(/not supported for shelved-offloaded instances/);
    const r = await attach(target.uuid, { volumeId: v.id }, '2.20');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ volumeAttachment: { id: v.id, serverId: target.uuid, volumeId: v.id, device: null } });
  });

  it('answers 404 for an attachment that does not exist', async () => {
    const v = await volume(stack, 'http-none');
    const r = await api.inject({ url: `/v2.1/servers/${vm.uuid}/os-volume_attachments/${v.id}` });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ itemNotFound: { code: 404, message: `Instance ${vm.uuid} is not attached to volume ${v.id}` } });
  });

  it('serves the same routes under a project id', async () => {
    const v = await volume(stack, 'http-project');
    const r = await api.inject({
      method: 'POST',
      url: `/v2.1/0123456789abcdef0123456789abcdef/servers/${vm.uuid}/os-volume_attachments`,
      payload: { volumeAttachment: { volumeId: v.id } },
    });
    expect(r.statusCode).toBe(200);
    await attached(vm.uuid, v.id);
    const list = await api.inject({ url: `/v2.1/0123456789abcdef0123456789abcdef/servers/${vm.uuid}/os-volume_attachments` });
    expect(list.json().volumeAttachments).toContainEqual(expect.objectContaining({ volumeId: v.id }));
  });
});

describe('detach (DELETE os-volume_attachments) [detach]', () => {
  it('[detach] answers 202 with no body, and the volume becomes available', async () => {
    const target = await runningServer(stack, 'vm-detach');
    const v = await volume(stack, 'http-detach');
    expect((await attach(target.uuid, { volumeId: v.id })).statusCode).toBe(200);
    await attached(target.uuid, v.id);
    const r = await api.inject({ method: 'DELETE', url: `/v2.1/servers/${target.uuid}/os-volume_attachments/${v.id}` });
    expect(r.statusCode).toBe(202);
    expect(r.body).toBe('');
    await stack.client.workflow.getHandle(detachWorkflowId(target.uuid, v.id)).result();
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    const list = await api.inject({ url: `/v2.1/servers/${target.uuid}/os-volume_attachments` });
    expect(list.json().volumeAttachments).toEqual([]);
  });

  it('[detach] answers 404 "Instance X is not attached to volume Y" when not attached', async () => {
    const v = await volume(stack, 'http-detach-none');
    const r = await api.inject({ method: 'DELETE', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments/${v.id}` });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ itemNotFound: { code: 404, message: `Instance ${vm.uuid} is not attached to volume ${v.id}` } });
  });

  it('answers 404 for an unknown server', async () => {
    const r = await api.inject({ method: 'DELETE', url: `/v2.1/servers/${UNKNOWN}/os-volume_attachments/${UNKNOWN}` });
    expect(r.statusCode).toBe(404);
    expect(r.json().itemNotFound.message).toBe(`Instance ${UNKNOWN} could not be found.`);
  });
});

describe('block storage (/v3/volumes)', () => {
  let created: Volume;

  it('creates a volume: 202 with the volume, available', async () => {
    const r = await api.inject({ method: 'POST', url: '/v3/volumes', payload: { volume: { size: 2, name: 'http-v3', description: null, volume_type: null, snapshot_id: null } } });
    expect(r.statusCode).toBe(202);
    expect(r.headers['openstack-api-version']).toBe('volume 3.0');
    const v = r.json().volume;
    expect(v).toMatchObject({ name: 'http-v3', size: 2, status: 'available', availability_zone: 'nova', attachments: [], multiattach: false, bootable: 'false', encrypted: false });
    created = await stack.service.resolveVolume(v.id);
  });

  it('lists volumes (summary and detail), by name, with all_tenants', async () => {
    const list = await api.inject({ url: '/v3/volumes?name=http-v3' });
    expect(list.json()).toEqual({ volumes: [{ id: created.id, name: 'http-v3', links: expect.any(Array) }] });
    const detail = await api.inject({ url: '/v3/volumes/detail?all_tenants=1&name=http-v3' });
    expect(detail.json().volumes).toEqual([expect.objectContaining({ id: created.id, status: 'available', size: 2 })]);
    const all = await api.inject({ url: '/v3/0123456789abcdef0123456789abcdef/volumes' });
    expect(all.json().volumes.map((v: { id: string }) => v.id)).toContain(created.id);
  });

  it('shows a volume with its attachments and the fields of the microversion', async () => {
    const v = await volume(stack, 'http-v3-attached');
    expect((await attach(vm.uuid, { volumeId: v.id })).statusCode).toBe(200);
    await attached(vm.uuid, v.id);
    const r = await api.inject({ url: `/v3/volumes/${v.id}`, headers: volumeApi('3.65') });
    expect(r.headers['openstack-api-version']).toBe('volume 3.65');
    const shown = r.json().volume;
    const bdm = (await stack.service.listAttachments(vm.uuid)).bdms.find((b) => b.volumeId === v.id)!;
    expect(shown).toMatchObject({ id: v.id, status: 'in-use', group_id: null, shared_targets: false, consumes_quota: true });
    expect(shown.attachments).toEqual([
      {
        id: v.id,
        attachment_id: bdm.attachmentId,
        volume_id: v.id,
        server_id: vm.uuid,
        host_name: stack.host,
        device: bdm.deviceName,
        attached_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/),
      },
    ]);
    const old = (await api.inject({ url: `/v3/volumes/${v.id}` })).json().volume;
    expect(old).not.toHaveProperty('group_id');
    expect(old).not.toHaveProperty('consumes_quota');
  });

  it('answers 404 for an unknown id and for a name', async () => {
    for (const ref of [UNKNOWN, 'http-v3']) {
      const r = await api.inject({ url: `/v3/volumes/${ref}` });
      expect(r.statusCode).toBe(404);
      expect(r.json()).toEqual({ itemNotFound: { code: 404, message: `Volume ${ref} could not be found.` } });
    }
  });

  it('refuses what it cannot create', async () => {
    const cases: Array<[Record<string, unknown>, number, string]> = [
      [{ name: 'x' }, 400, "Invalid input for field/attribute volume: must have required property 'size'."],
      [{ size: 0 }, 400, 'Invalid input for field/attribute volume.size: must be >= 1.'],
      [{ size: 1, snapshot_id: UNKNOWN }, 400, "tether's volume service creates blank volumes only (snapshot_id not supported)."],
      [{ size: 1, volume_type: 'ssd' }, 404, 'Volume type with name ssd could not be found.'],
      [{ size: 1, availability_zone: 'elsewhere' }, 400, "Availability zone 'elsewhere' is invalid."],
    ];
    for (const [spec, code, message] of cases) {
      const r = await api.inject({ method: 'POST', url: '/v3/volumes', payload: { volume: spec } });
      expect({ code: r.statusCode, message: Object.values(r.json() as Record<string, { message: string }>)[0]!.message }).toEqual({ code, message });
    }
  });

  it('deletes an available volume (202) and refuses one in use (400)', async () => {
    const del = await api.inject({ method: 'DELETE', url: `/v3/volumes/${created.id}` });
    expect(del.statusCode).toBe(202);
    expect((await api.inject({ url: `/v3/volumes/${created.id}` })).statusCode).toBe(404);
    const inUse = (await stack.service.listVolumes()).find((v) => v.status === 'in-use')!;
    const refused = await api.inject({ method: 'DELETE', url: `/v3/volumes/${inUse.id}` });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().badRequest.message).toMatch(/Volume status must be available or error, but current status is: in-use/);
  });
});

describe('GET /healthz', () => {
  it('is ok when the database, Temporal and both task queues answer', async () => {
    const r = await api.inject({ url: '/healthz' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({
      status: 'ok',
      checks: { database: { status: 'ok' }, temporal: { status: 'ok' }, controlPlane: { status: 'ok' }, computeAgent: { status: 'ok' } },
    });
  });

  it('is 503 with the failing check when no compute agent polls the host queue', async () => {
    const elsewhere = await buildTestApi(stack, { computeHost: 'no-such-host' });
    try {
      const r = await elsewhere.inject({ url: '/healthz' });
      expect(r.statusCode).toBe(503);
      expect(r.json()).toEqual({
        status: 'fail',
        checks: {
          database: { status: 'ok' },
          temporal: { status: 'ok' },
          controlPlane: { status: 'ok' },
          computeAgent: { status: 'fail', message: 'no activity poller on task queue host-no-such-host' },
        },
      });
    } finally {
      await elsewhere.close();
    }
  });
});
