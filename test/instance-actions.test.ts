/**
 * Nova's instance actions over a real stack (Temporal, PostgreSQL, libvirt + QEMU): an attach and a
 * detach the guest ignored, asked over HTTP, are actions keyed by the request id each answer carried;
 * their events are the sagas' steps, the ignored detach's failed one saying why; the fields of each
 * microversion, pagination and its refusals, a deleted server's actions from 2.21, 404s, tenancy
 * with tokens, and Debian's `openstack server event list/show`.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { openstack, openstackJson, startTestApi, writeCloud, type Cloud, type RunningApi } from './support/clouds.ts';
import { ALPHA, buildApi, keystoneAuthenticator, login, writeIdentityFile, type IdentityFixture, type TestUser } from './support/identity.ts';
import type { ApiServer } from '../src/api/server.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import type { Instance } from '../src/domain/types.ts';

vi.setConfig({ testTimeout: 180_000 });

let stack: TestStack;
let api: RunningApi;
let cloud: Cloud;
let identity: IdentityFixture;
let keystone: ApiServer;
let vm: Instance;
/** The request ids the attach and the ignored detach were answered with. */
let attachRequest: string;
let detachRequest: string;
let attachedVolumeId: string;

const compute = (version: string) => ({ 'openstack-api-version': `compute ${version}` });
const get = (url: string, version = '2.84') => api.app.inject({ url, headers: compute(version) });
const actionsUrl = (serverId: string) => `/v2.1/servers/${serverId}/os-instance-actions`;

type Action = Record<string, unknown> & { request_id: string; action: string; events?: Array<Record<string, unknown>> };

async function settled(workflowId: string): Promise<void> {
  await stack.client.workflow.getHandle(workflowId).result().catch(() => undefined);
}

beforeAll(async () => {
  stack = await startTestStack({ detachUnplugWaitMs: 500 });
  api = await startTestApi(stack);
  cloud = await writeCloud(api.url);
  vm = await runningServer(stack, 'vm-actions');

  // an attach asked over HTTP, then a detach of a virtio disk the guest (a diskless domain) never releases
  const v = await volume(stack, 'actions-vol');
  attachedVolumeId = v.id;
  const attach = await api.app.inject({ method: 'POST', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments`, headers: compute('2.79'), payload: { volumeAttachment: { volumeId: v.id, device: '/dev/vdb' } } });
  expect(attach.statusCode).toBe(200);
  attachRequest = attach.headers['x-openstack-request-id'] as string;
  await settled(attachWorkflowId(vm.uuid, v.id));
  const detach = await api.app.inject({ method: 'DELETE', url: `/v2.1/servers/${vm.uuid}/os-volume_attachments/${v.id}`, headers: compute('2.79') });
  expect(detach.statusCode).toBe(202);
  detachRequest = detach.headers['x-openstack-request-id'] as string;
  await settled(detachWorkflowId(vm.uuid, v.id));
}, 300_000);

afterAll(async () => {
  await keystone?.close();
  await identity?.dispose();
  await cloud?.dispose();
  await api?.close();
  await stack?.stop();
});

/** The list, once the visibility store shows `count` actions at least. */
async function listed(serverId: string, version = '2.84', count = 1): Promise<Action[]> {
  let actions: Action[] = [];
  await expect
    .poll(async () => {
      const r = await get(actionsUrl(serverId), version);
      actions = r.statusCode === 200 ? (r.json().instanceActions as Action[]) : [];
      return actions.length;
    }, { timeout: 30_000, interval: 250 })
    .toBeGreaterThanOrEqual(count);
  return actions;
}

describe('actions and events of the sagas', () => {
  it('lists each request as an action keyed by the request id its answer carried, newest first', async () => {
    const actions = await listed(vm.uuid, '2.84', 3);
    expect(actions.map((a) => a.action)).toEqual(['detach_volume', 'attach_volume', 'create']);
    expect(actions[0]).toEqual({
      action: 'detach_volume',
      instance_uuid: vm.uuid,
      request_id: detachRequest,
      user_id: 'noauth',
      project_id: 'tether',
      start_time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/),
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/),
      message: 'Error',
    });
    expect(actions[1]).toMatchObject({ request_id: attachRequest, message: null });
    // the server made through the service (no HTTP request): an id of the same shape all the same
    expect(actions[2]!.request_id).toMatch(/^req-[0-9a-f-]{36}$/);
  });

  it('an attach: every step a successful event, the hot-plug named as Nova names it', async () => {
    const r = await get(`${actionsUrl(vm.uuid)}/${attachRequest}`);
    expect(r.statusCode).toBe(200);
    const action = r.json().instanceAction as Action;
    expect(action).toMatchObject({ action: 'attach_volume', request_id: attachRequest, message: null });
    const events = action.events!;
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['compute_reserve_block_device_name', 'compute_attach_volume']));
    for (const e of events) {
      expect(e).toMatchObject({ result: 'Success', details: null, traceback: null, host: stack.host, hostId: expect.stringMatching(/^[0-9a-f]{56}$/) });
      expect(e.finish_time! >= e.start_time!).toBe(true);
    }
    // Nova's order: newest first
    expect(events.map((e) => e.start_time as string)).toEqual(events.map((e) => e.start_time as string).sort().reverse());
  });

  it('a detach the guest ignored: the failed event says why, then the rollback steps', async () => {
    const r = await get(`${actionsUrl(vm.uuid)}/${detachRequest}`);
    const action = r.json().instanceAction as Action;
    expect(action).toMatchObject({ action: 'detach_volume', message: 'Error' });
    const events = [...action.events!].reverse();
    const failed = events.filter((e) => e.result === 'Error');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ event: 'compute_detach_volume', details: expect.stringMatching(/^The guest did not release disk vdb of volume .+ after \d+ unplug requests$/) });
    const rollback = events.slice(events.indexOf(failed[0]!) + 1);
    expect(rollback.length).toBeGreaterThan(0);
    expect(rollback.every((e) => String(e.event).startsWith('compute_rollback_') && e.result === 'Success')).toBe(true);
  });

  it('fields per microversion: no updated_at before 2.58; host and hostId from 2.62; details from 2.84', async () => {
    const old = await get(actionsUrl(vm.uuid), '2.57');
    expect(Object.keys((old.json().instanceActions as Action[])[0]!).sort()).toEqual(['action', 'instance_uuid', 'message', 'project_id', 'request_id', 'start_time', 'user_id']);
    const at = async (version: string) => (((await get(`${actionsUrl(vm.uuid)}/${detachRequest}`, version)).json().instanceAction as Action).events![0]!);
    expect(Object.keys(await at('2.1')).sort()).toEqual(['event', 'finish_time', 'result', 'start_time', 'traceback']);
    expect(Object.keys(await at('2.62')).sort()).toEqual(['event', 'finish_time', 'host', 'hostId', 'result', 'start_time', 'traceback']);
    expect(Object.keys(await at('2.84')).sort()).toEqual(['details', 'event', 'finish_time', 'host', 'hostId', 'result', 'start_time', 'traceback']);
  });

  it('404 for an unknown request id and an unknown server', async () => {
    const r = await get(`${actionsUrl(vm.uuid)}/req-00000000-0000-4000-8000-000000000000`);
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ itemNotFound: { code: 404, message: 'Action req-00000000-0000-4000-8000-000000000000 not found' } });
    expect((await get(actionsUrl('00000000-0000-4000-8000-000000000000'))).statusCode).toBe(404);
  });
});

describe('pagination and filters (2.58, 2.66)', () => {
  it('limit and marker page through the actions with a next link', async () => {
    const all = await listed(vm.uuid, '2.84', 3);
    const first = await get(`${actionsUrl(vm.uuid)}?limit=2`);
    expect((first.json().instanceActions as Action[]).map((a) => a.request_id)).toEqual(all.slice(0, 2).map((a) => a.request_id));
    const next = (first.json().links as Array<{ rel: string; href: string }>)[0]!;
    expect(next.rel).toBe('next');
    // absolute, on the host the request named (inject's is localhost:80)
    expect(next.href).toBe(`http://localhost:80/v2.1/servers/${vm.uuid}/os-instance-actions?limit=2&marker=${all[1]!.request_id}`);
    const second = await get(next.href.slice('http://localhost:80'.length));
    expect((second.json().instanceActions as Action[]).map((a) => a.request_id)).toEqual(all.slice(2, 4).map((a) => a.request_id));
    expect(second.json().links).toBeUndefined();
  });

  it('changes-since and changes-before filter on updated_at; refusals are 400s', async () => {
    const all = await listed(vm.uuid, '2.84', 3);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect((await get(`${actionsUrl(vm.uuid)}?changes-since=${future}`)).json().instanceActions).toEqual([]);
    expect((await get(`${actionsUrl(vm.uuid)}?changes-before=${future}`)).json().instanceActions).toHaveLength(all.length);
    expect((await get(`${actionsUrl(vm.uuid)}?changes-since=${future}&changes-before=2020-01-01T00:00:00Z`)).statusCode).toBe(400);
    expect((await get(`${actionsUrl(vm.uuid)}?changes-before=${future}`, '2.65')).statusCode).toBe(400);
    expect((await get(`${actionsUrl(vm.uuid)}?marker=req-unknown`)).json()).toEqual({ badRequest: { code: 400, message: 'Marker req-unknown could not be found.' } });
    expect((await get(`${actionsUrl(vm.uuid)}?limit=-1`)).statusCode).toBe(400);
    expect((await get(`${actionsUrl(vm.uuid)}?changes-since=yesterday`)).statusCode).toBe(400);
    expect((await get(`${actionsUrl(vm.uuid)}?sort=x`)).statusCode).toBe(400);
    // before 2.58 the query is ignored, as in Nova
    expect((await get(`${actionsUrl(vm.uuid)}?limit=1&sort=x`, '2.57')).json().instanceActions).toHaveLength(all.length);
  });
});

describe('a deleted server (2.21)', () => {
  it("its actions stay readable from 2.21 (the delete among them); below, the server is not found", async () => {
    const gone = await runningServer(stack, 'vm-actions-gone');
    await stack.service.deleteServer(gone.uuid);
    const actions = await listed(gone.uuid, '2.21', 2);
    expect(actions.map((a) => a.action)).toEqual(['delete', 'create']);
    expect((await get(actionsUrl(gone.uuid), '2.20')).statusCode).toBe(404);
  });
});

describe('tenancy (tokens)', () => {
  const tokens = {} as Record<TestUser, string>;
  let own: Instance;
  let ownRequest: string;

  beforeAll(async () => {
    identity = await writeIdentityFile();
    keystone = await buildApi(stack, await keystoneAuthenticator(stack, identity.file));
    for (const user of ['alice', 'bob', 'rita'] as const) tokens[user] = await login(keystone, user);
    const { instance, handle } = await stack.service.createServer({ name: 'vm-actions-alpha', projectId: ALPHA });
    await handle.result();
    own = instance;
    const v = await stack.service.as({ userId: 'x', userName: 'x', projectId: ALPHA, projectName: 'alpha', roles: ['member'] }).createVolume({ name: 'alpha-vol', size: 1 });
    const r = await keystone.inject({ method: 'POST', url: `/v2.1/servers/${own.uuid}/os-volume_attachments`, headers: { 'x-auth-token': tokens.alice, ...compute('2.89') }, payload: { volumeAttachment: { volumeId: v.id } } });
    expect(r.statusCode).toBe(200);
    ownRequest = r.headers['x-openstack-request-id'] as string;
    await settled(attachWorkflowId(own.uuid, v.id));
  });

  const as = (user: TestUser, url: string, version = '2.84') => keystone.inject({ url, headers: { 'x-auth-token': tokens[user], ...compute(version) } });

  it("the project's member sees its action with its own user and project, events without traceback or host", async () => {
    await expect.poll(async () => (await as('alice', actionsUrl(own.uuid))).json().instanceActions?.length, { timeout: 30_000 }).toBe(2);
    const r = await as('alice', `${actionsUrl(own.uuid)}/${ownRequest}`);
    expect(r.statusCode).toBe(200);
    const action = r.json().instanceAction as Action;
    expect(action).toMatchObject({ action: 'attach_volume', project_id: ALPHA, user_id: expect.any(String) });
    expect(action.user_id).not.toBe('noauth');
    expect(Object.keys(action.events![0]!).sort()).toEqual(['details', 'event', 'finish_time', 'hostId', 'result', 'start_time']);
    // before 2.51 a non-admin sees no events (Nova's rule)
    expect((await as('alice', `${actionsUrl(own.uuid)}/${ownRequest}`, '2.50')).json().instanceAction.events).toBeUndefined();
    // a reader may look too
    expect((await as('rita', actionsUrl(own.uuid))).statusCode).toBe(200);
  });

  it("another project's server, its actions and its action are not found", async () => {
    expect((await as('bob', actionsUrl(own.uuid))).statusCode).toBe(404);
    expect((await as('bob', `${actionsUrl(own.uuid)}/${ownRequest}`)).statusCode).toBe(404);
    expect((await as('bob', actionsUrl(vm.uuid))).statusCode).toBe(404);
  });
});

describe('the Temporal UI', () => {
  it('a workflow reads by its summary and details; each activity by the one line of its step', async () => {
    const handle = stack.client.workflow.getHandle(attachWorkflowId(vm.uuid, attachedVolumeId));
    const d = await handle.describe();
    expect(await d.staticSummary()).toBe('attach volume actions-vol to server vm-actions');
    const details = await d.staticDetails();
    expect(details).toContain(`request: ${attachRequest}`);
    expect(details).toContain(`server: ${vm.uuid}`);
    const history = await handle.fetchHistory();
    const summaries = (history.events ?? []).flatMap((e) => {
      const data = e.activityTaskScheduledEventAttributes ? e.userMetadata?.summary?.data : undefined;
      return data ? [JSON.parse(Buffer.from(data).toString('utf8')) as string] : [];
    });
    expect(summaries).toContain('Attach the disk to the libvirt domain');
    expect(summaries).toContain('Create the block device mapping with a reserved device name');
  });
});

describe("Debian's openstack CLI", () => {
  it('server event list and show tell why the detach did not happen', async () => {
    const list = await openstackJson<Array<Record<string, string>>>(cloud, ['--os-compute-api-version', '2.84', 'server', 'event', 'list', vm.uuid]);
    expect(list.map((e) => e['Request ID'])).toEqual(expect.arrayContaining([attachRequest, detachRequest]));
    expect(list.find((e) => e['Request ID'] === detachRequest)).toMatchObject({ Action: 'detach_volume', 'Server ID': vm.uuid });
    const show = await openstack(cloud, ['--os-compute-api-version', '2.84', 'server', 'event', 'show', vm.uuid, detachRequest, '-f', 'json']);
    expect(show.code, show.stderr).toBe(0);
    const shown = JSON.parse(show.stdout) as Record<string, unknown>;
    expect(shown).toMatchObject({ action: 'detach_volume', message: 'Error', request_id: detachRequest });
    expect(JSON.stringify(shown.events)).toMatch(/The guest did not release disk vdb/);
  });
});
