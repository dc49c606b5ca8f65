/**
 * The HTTP layer on its own (no stack): microversion negotiation, error bodies, malformed requests,
 * version documents and the OpenAPI document. The service is a stub.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { buildApiServer, type ApiServer } from '../src/api/server.ts';
import { COMPUTE_VERSIONS, VOLUME_VERSIONS, negotiate } from '../src/api/microversion.ts';
import { serverStatus, serverView } from '../src/api/views/server.ts';
import type { BlockDeviceMapping } from '../src/domain/types.ts';
import type { TetherService } from '../src/service/tether-service.ts';
import type { Queryable } from '../src/db/database.ts';
import type { Instance, VmState } from '../src/domain/types.ts';

const instance: Instance = {
  uuid: '11111111-2222-4333-8444-555555555555',
  name: 'vm',
  projectId: 'tether',
  host: 'h1',
  vmState: 'active',
  taskState: null,
  availabilityZone: 'nova',
  libvirtDomain: 'tether-11111111',
  rootDeviceName: '/dev/sda',
  defaultDiskBus: 'scsi',
  locked: false,
  createdAt: '2025-01-02T03:04:05.678Z',
};

const brokenDatabase = async () => {
  throw new Error('connect ECONNREFUSED 10.0.0.5:5432 (password=hunter2)');
};

/** Lists one server; every other call fails the way a broken database would. */
const stubService = {
  as: () => stubService,
  listServers: async () => [instance],
  listServerDetails: brokenDatabase,
  listAttachments: brokenDatabase,
} as unknown as TetherService;

let api: ApiServer;

beforeAll(async () => {
  api = await buildApiServer({
    service: stubService,
    db: {} as Queryable,
    client: {} as Client,
    config: { controlTaskQueue: 'control', computeHost: 'h1' },
  });
});

afterAll(async () => {
  await api?.close();
});

describe('negotiate', () => {
  const h = (headers: Record<string, string>) => headers;

  it('defaults to the minimum and takes "latest" as the maximum', () => {
    expect(negotiate(COMPUTE_VERSIONS, h({}))).toBe(1);
    expect(negotiate(COMPUTE_VERSIONS, h({ 'openstack-api-version': 'compute latest' }))).toBe(104);
    expect(negotiate(VOLUME_VERSIONS, h({}))).toBe(0);
    expect(negotiate(VOLUME_VERSIONS, h({ 'openstack-api-version': 'volume latest' }))).toBe(70);
  });

  it('reads both compute headers, the new one first', () => {
    expect(negotiate(COMPUTE_VERSIONS, h({ 'x-openstack-nova-api-version': '2.60' }))).toBe(60);
    expect(negotiate(COMPUTE_VERSIONS, h({ 'openstack-api-version': 'compute 2.70', 'x-openstack-nova-api-version': '2.60' }))).toBe(70);
    expect(negotiate(COMPUTE_VERSIONS, h({ 'openstack-api-version': 'volume 3.5, compute 2.42' }))).toBe(42);
    // another service's version is not ours
    expect(negotiate(COMPUTE_VERSIONS, h({ 'openstack-api-version': 'volume 3.5' }))).toBe(1);
    expect(negotiate(VOLUME_VERSIONS, h({ 'x-openstack-nova-api-version': '2.60' }))).toBe(0);
  });

  it.each([
    ['compute 2.105', 406, 'Version 2.105 is not supported by the API. Minimum is 2.1 and maximum is 2.104.'],
    ['compute 2.0', 406, 'Version 2.0 is not supported by the API. Minimum is 2.1 and maximum is 2.104.'],
    ['compute 3.1', 406, 'Version 3.1 is not supported by the API. Minimum is 2.1 and maximum is 2.104.'],
    ['compute 2.x', 400, 'API Version String 2.x is of invalid format. Must be of format MajorNum.MinorNum.'],
    ['compute 2.01', 400, 'API Version String 2.01 is of invalid format. Must be of format MajorNum.MinorNum.'],
  ])('refuses %j with %i', (header, statusCode, message) => {
    expect(() => negotiate(COMPUTE_VERSIONS, h({ 'openstack-api-version': header }))).toThrow(expect.objectContaining({ statusCode, message }));
  });
});

describe('microversions over HTTP', () => {
  it('echoes the version used, in both compute headers, with Vary', async () => {
    const r = await api.inject({ url: '/v2.1/servers', headers: { 'x-openstack-nova-api-version': '2.73' } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['openstack-api-version']).toBe('compute 2.73');
    expect(r.headers['x-openstack-nova-api-version']).toBe('2.73');
    expect(r.headers.vary).toBe('OpenStack-API-Version, X-OpenStack-Nova-API-Version');
    const d = await api.inject({ url: '/v2.1/servers' });
    expect(d.headers['openstack-api-version']).toBe('compute 2.1');
  });

  it('answers 406 outside the range, as a computeFault', async () => {
    const r = await api.inject({ url: '/v2.1/servers', headers: { 'openstack-api-version': 'compute 2.105' } });
    expect(r.statusCode).toBe(406);
    expect(r.json()).toEqual({ computeFault: { code: 406, message: 'Version 2.105 is not supported by the API. Minimum is 2.1 and maximum is 2.104.' } });
  });

  it('negotiates the volume API separately (3.0 to 3.70)', async () => {
    const ok = await api.inject({ url: '/v3/volumes', headers: { 'openstack-api-version': 'volume 3.70' } });
    // the stub has no volumes API: the route answers 500, but the version was negotiated and echoed
    expect(ok.headers['openstack-api-version']).toBe('volume 3.70');
    expect(ok.headers.vary).toBe('OpenStack-API-Version');
    const r = await api.inject({ url: '/v3/volumes', headers: { 'openstack-api-version': 'volume 3.71' } });
    expect(r.statusCode).toBe(406);
    expect(r.json().computeFault.message).toBe('Version 3.71 is not supported by the API. Minimum is 3.0 and maximum is 3.70.');
  });
});

describe('version documents', () => {
  it.each(['/v2.1', '/v2.1/'])('GET %s describes v2.1 with a self link built from the Host header', async (url) => {
    const r = await api.inject({ url, headers: { host: 'cloud.example:8774' } });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({
      version: expect.objectContaining({
        id: 'v2.1',
        status: 'CURRENT',
        version: '2.104',
        min_version: '2.1',
        links: expect.arrayContaining([{ rel: 'self', href: 'http://cloud.example:8774/v2.1/' }]),
      }),
    });
  });

  it('GET / lists v2.1', async () => {
    const r = await api.inject({ url: '/', headers: { host: 'cloud.example' } });
    expect(r.json().versions).toEqual([expect.objectContaining({ id: 'v2.1', version: '2.104', min_version: '2.1' })]);
  });

  it.each(['/v3', '/v3/'])('GET %s describes v3.0 (3.0 to 3.70)', async (url) => {
    const r = await api.inject({ url, headers: { host: 'cloud.example:8776' } });
    expect(r.json()).toEqual({
      versions: [
        expect.objectContaining({
          id: 'v3.0',
          status: 'CURRENT',
          version: '3.70',
          min_version: '3.0',
          links: expect.arrayContaining([{ rel: 'self', href: 'http://cloud.example:8776/v3/' }]),
        }),
      ],
    });
  });
});

describe('errors', () => {
  it('hides the details of an unexpected error: a generic 500 with the request id, no stack', async () => {
    const r = await api.inject({ url: `/v2.1/servers/detail` });
    expect(r.statusCode).toBe(500);
    const message: string = r.json().computeFault.message;
    expect(message).toBe(`Unexpected API Error. Details are in the tether API log (request ${r.headers['x-openstack-request-id']}).`);
    expect(r.body).not.toMatch(/hunter2|ECONNREFUSED|at .*\.ts/);
  });

  it('answers malformed JSON with a 400 badRequest', async () => {
    const r = await api.inject({
      method: 'POST',
      url: `/v2.1/servers/${instance.uuid}/os-volume_attachments`,
      headers: { 'content-type': 'application/json' },
      payload: '{"volumeAttachment": ',
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().badRequest).toEqual({ code: 400, message: expect.stringMatching(/not valid JSON/) });
  });

  it.each([
    [{}, "field/attribute body: must have required property 'volumeAttachment'"],
    [{ volumeAttachment: 'x' }, 'field/attribute volumeAttachment: must be object'],
    [{ volumeAttachment: {} }, "field/attribute volumeAttachment: must have required property 'volumeId'"],
    [{ volumeAttachment: { volumeId: 'not-a-uuid' } }, 'field/attribute volumeAttachment.volumeId: must match format "uuid"'],
    [{ volumeAttachment: { volumeId: instance.uuid, device: ['/dev/sdb'] } }, 'field/attribute volumeAttachment.device: must be string,null'],
    [{ volumeAttachment: { volumeId: instance.uuid, delete_on_termination: 'maybe' } }, 'volumeAttachment.delete_on_termination: must be boolean'],
    [{ volumeAttachment: { volumeId: instance.uuid, serverId: instance.uuid } }, "volumeAttachment: must NOT have additional properties ('serverId' was unexpected)"],
    [{ volumeAttachment: { volumeId: instance.uuid }, extra: 1 }, "body: must NOT have additional properties ('extra' was unexpected)"],
  ])('answers the body %j with a 400 that says what is wrong', async (payload, message) => {
    const r = await api.inject({ method: 'POST', url: `/v2.1/servers/${instance.uuid}/os-volume_attachments`, payload });
    expect(r.statusCode).toBe(400);
    expect(r.json()).toEqual({ badRequest: { code: 400, message: expect.stringContaining(message) } });
  });

  it('takes an empty body with a JSON content type as no body', async () => {
    const r = await api.inject({ method: 'POST', url: `/v2.1/servers/${instance.uuid}/os-volume_attachments`, headers: { 'content-type': 'application/json' } });
    expect(r.json()).toEqual({ badRequest: { code: 400, message: 'Invalid input for field/attribute body: must be object.' } });
  });

  it('answers an unknown path with a 404 itemNotFound', async () => {
    const r = await api.inject({ url: '/v2.1/os-keypairs' });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ itemNotFound: { code: 404, message: 'The resource could not be found.' } });
  });
});

describe('server status', () => {
  it.each<[VmState, string]>([
    ['active', 'ACTIVE'],
    ['building', 'BUILD'],
    ['stopped', 'SHUTOFF'],
    ['paused', 'PAUSED'],
    ['suspended', 'SUSPENDED'],
    ['shelved', 'SHELVED'],
    ['shelved_offloaded', 'SHELVED_OFFLOADED'],
    ['error', 'ERROR'],
    ['deleted', 'DELETED'],
    ['resized', 'VERIFY_RESIZE'],
    ['soft-delete', 'SOFT_DELETED'],
    ['rescued', 'RESCUE'],
  ])('vm_state %s is %s', (vmState, status) => {
    expect(serverStatus(vmState)).toBe(status);
    if (vmState === 'active') expect([serverStatus(vmState, 'rebooting'), serverStatus(vmState, 'rebooting_hard'), serverStatus(vmState, 'powering-off')]).toEqual(['REBOOT', 'HARD_REBOOT', 'ACTIVE']);
  });
});

describe('the OpenAPI document', () => {
  it('describes every route served, with its schemas and the microversion headers', async () => {
    const r = await api.inject({ url: '/openapi.json' });
    expect(r.statusCode).toBe(200);
    const doc = r.json();
    expect(doc.openapi).toMatch(/^3\./);
    const operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
    );
    for (const prefix of ['/v2.1', '/v2.1/{project_id}']) {
      expect(operations).toEqual(
        expect.arrayContaining([
          `GET ${prefix}/servers`,
          `GET ${prefix}/servers/detail`,
          `GET ${prefix}/servers/{server_id}`,
          `GET ${prefix}/servers/{server_id}/os-volume_attachments`,
          `POST ${prefix}/servers/{server_id}/os-volume_attachments`,
          `GET ${prefix}/servers/{server_id}/os-volume_attachments/{volume_id}`,
          `DELETE ${prefix}/servers/{server_id}/os-volume_attachments/{volume_id}`,
        ]),
      );
    }
    for (const prefix of ['/v3', '/v3/{project_id}']) {
      expect(operations).toEqual(
        expect.arrayContaining([
          `GET ${prefix}/volumes`,
          `GET ${prefix}/volumes/detail`,
          `POST ${prefix}/volumes`,
          `GET ${prefix}/volumes/{volume_id}`,
          `DELETE ${prefix}/volumes/{volume_id}`,
        ]),
      );
    }
    expect(operations).toEqual(expect.arrayContaining(['GET /', 'GET /v2.1', 'GET /v3', 'GET /healthz']));
    const post = doc.paths['/v2.1/servers/{server_id}/os-volume_attachments'].post;
    expect(post.requestBody.content['application/json'].schema.properties.volumeAttachment.required).toEqual(['volumeId']);
    expect(post.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual(
      expect.arrayContaining(['path:server_id', 'header:openstack-api-version', 'header:x-openstack-nova-api-version']),
    );
    expect(Object.keys(post.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '406', '409']));
  });
});

describe('what each microversion up to 2.104 changes in what tether serves', () => {
  const bdm = (volumeId: string, attachmentId: string | null): BlockDeviceMapping => ({
    uuid: `bdm-${volumeId}`,
    instanceUuid: instance.uuid,
    volumeId,
    sourceType: 'volume',
    destinationType: 'volume',
    deviceName: '/dev/sdb',
    diskBus: 'scsi',
    deviceType: 'disk',
    bootIndex: null,
    tag: null,
    deleteOnTermination: false,
    attachmentId,
    attachStatus: attachmentId ? 'attached' : 'attaching',
    operationId: null,
    createdAt: instance.createdAt,
  });
  const reserved = '22222222-2222-4222-8222-222222222222';
  const inFlight = '33333333-3333-4333-8333-333333333333';
  const attached = [bdm(reserved, '44444444-4444-4444-8444-444444444444'), bdm(inFlight, null)];
  const attachService = {
    as: () => attachService,
    listAttachments: async () => ({ instance, bdms: attached }),
    attachVolume: async () => ({
      reservation: { bdmUuid: 'b', device: '/dev/sdc', attachmentId: 'a', instanceUuid: instance.uuid, volumeId: reserved, tag: null, deleteOnTermination: false },
    }),
  } as unknown as TetherService;
  let attachApi: ApiServer;
  beforeAll(async () => {
    attachApi = await buildApiServer({ service: attachService, db: {} as Queryable, client: {} as Client, config: { controlTaskQueue: 'control', computeHost: 'h1' } });
  });
  afterAll(async () => {
    await attachApi?.close();
  });
  const at = (version: string) => ({ 'openstack-api-version': `compute ${version}` });

  it('server show: hostname (2.90), pinned_availability_zone (2.96), scheduler_hints (2.100); the flavor of the instance', () => {
    const vm = { ...instance, flavorId: 'tether.small', pinnedAvailabilityZone: 'nova', schedulerHints: { same_host: 'x' } };
    const at89 = serverView(vm, [], 'http://h', 89);
    for (const key of ['OS-EXT-SRV-ATTR:hostname', 'pinned_availability_zone', 'scheduler_hints']) expect(at89).not.toHaveProperty(key);
    expect(serverView(vm, [], 'http://h', 90)['OS-EXT-SRV-ATTR:hostname']).toBe('vm');
    expect(serverView(vm, [], 'http://h', 96).pinned_availability_zone).toBe('nova');
    expect(serverView(vm, [], 'http://h', 100)).toMatchObject({ scheduler_hints: { same_host: 'x' }, image: '', flavor: { original_name: 'tether.small', ram: 128 } });
    expect(serverView(vm, [], 'http://h', 46).flavor).toEqual({ id: 'tether.small', links: [expect.objectContaining({ rel: 'bookmark' })] });
  });

  it("timestamps in Nova's layouts: created/updated in seconds with Z, OS-SRV-USG:launched_at in microseconds without a zone (gophercloud parses each with exactly that layout)", () => {
    const view = serverView({ ...instance, vmState: 'active', createdAt: '2026-12-08T03:55:38.123Z' }, [], 'http://h', 2);
    expect(view.created).toBe('2026-12-08T03:55:38Z');
    expect(view['OS-SRV-USG:launched_at']).toBe('2026-12-08T03:55:38.123000');
    expect(view['OS-SRV-USG:terminated_at']).toBeNull();
  });

  it('from 2.89 an attach in flight is not listed (nor shown) before it has its attachment id (Nova bug 2160224)', async () => {
    const list = async (version: string) => (await attachApi.inject({ url: `/v2.1/servers/${instance.uuid}/os-volume_attachments`, headers: at(version) })).json().volumeAttachments;
    expect((await list('2.88')).map((a: { volumeId: string }) => a.volumeId)).toEqual([reserved, inFlight]);
    const at89 = await list('2.89');
    expect(at89).toEqual([expect.objectContaining({ volumeId: reserved, attachment_id: '44444444-4444-4444-8444-444444444444', bdm_uuid: `bdm-${reserved}` })]);
    const show = await attachApi.inject({ url: `/v2.1/servers/${instance.uuid}/os-volume_attachments/${inFlight}`, headers: at('2.104') });
    expect(show.statusCode).toBe(404);
  });

  it('POST os-volume_attachments: 200 with the attachment before 2.101, 202 and no body from it', async () => {
    const post = (version: string) =>
      attachApi.inject({ method: 'POST', url: `/v2.1/servers/${instance.uuid}/os-volume_attachments`, headers: at(version), payload: { volumeAttachment: { volumeId: reserved } } });
    const before = await post('2.100');
    expect(before.statusCode).toBe(200);
    expect(before.json().volumeAttachment).toMatchObject({ id: reserved, device: '/dev/sdc' });
    const after = await post('2.101');
    expect(after.statusCode).toBe(202);
    expect(after.body).toBe('');
  });

  it('flavors: swap "" before 2.75, description 2.55, extra_specs 2.61, no rxtx_factor nor disabled from 2.102, name filter 2.102', async () => {
    const get = async (url: string, version: string) => attachApi.inject({ url, headers: at(version) });
    const old = (await get('/v2.1/flavors/tether.tiny', '2.1')).json().flavor;
    expect(old).toMatchObject({ swap: '', rxtx_factor: 1, 'OS-FLV-DISABLED:disabled': false, 'os-flavor-access:is_public': true });
    expect(old).not.toHaveProperty('description');
    const newest = (await get('/v2.1/flavors/tether.tiny', '2.104')).json().flavor;
    expect(newest).toMatchObject({ swap: 0, description: expect.any(String), extra_specs: {} });
    expect(Object.keys(newest)).not.toContain('rxtx_factor');
    expect((await get('/v2.1/flavors?name=tether.small', '2.102')).json().flavors.map((f: { id: string }) => f.id)).toEqual(['tether.small']);
    expect((await get('/v2.1/flavors?name=tether.small', '2.101')).statusCode).toBe(400);
    expect((await get('/v2.1/flavors/tether.tiny?x=1', '2.102')).statusCode).toBe(400);
    expect((await get('/v2.1/flavors/tether.tiny?x=1', '2.101')).statusCode).toBe(200);
  });

  it('server actions: unshelve takes a host from 2.91, migrate from 2.56', async () => {
    const act = (version: string, body: unknown) =>
      attachApi.inject({ method: 'POST', url: `/v2.1/servers/${instance.uuid}/action`, headers: at(version), payload: body as Record<string, unknown> });
    expect((await act('2.90', { unshelve: { host: 'h2' } })).json().badRequest.message).toMatch(/'host' was unexpected/);
    expect((await act('2.55', { migrate: { host: 'h2', x: 1 } })).statusCode).not.toBe(400);
    expect((await act('2.56', { migrate: { host: 'h2', x: 1 } })).statusCode).toBe(400);
  });
});
