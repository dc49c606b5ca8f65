/**
 * Tenancy in keystone mode over a real stack: every cross-project attempt (show, list, attach,
 * detach, a foreign volume on one's own server, delete) is refused as "not found" with all three
 * stores unchanged; a reader may look but not attach or detach (403); an admin acts across
 * projects. The same rules on the tether CLI with --project, and the real `openstack` and `nova`
 * CLIs with password auth against tether's identity endpoint.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { ALPHA, BETA, PASSWORDS, buildApi, keystoneAuthenticator, login, passwordFlags, writeIdentityFile, type IdentityFixture, type TestUser } from './support/identity.ts';
import { openstack, type Cloud } from './support/clouds.ts';
import type { ApiServer } from '../src/api/server.ts';
import { attachWorkflowId, detachWorkflowId } from '../src/domain/steps.ts';
import type { Instance, Volume, VolumeStatus } from '../src/domain/types.ts';
import { projectRoot } from '../src/config.ts';

vi.setConfig({ testTimeout: 180_000 });

let stack: TestStack;
let identity: IdentityFixture;
let api: ApiServer;
let url: string;
const tokens = {} as Record<TestUser, string>;
let vmA: Instance;
let vmB: Instance;
let volA: Volume;
let volA2: Volume;
let volB: Volume;

async function server(name: string, projectId: string): Promise<Instance> {
  const { instance, handle } = await stack.service.createServer({ name, projectId });
  await handle.result();
  return stack.service.resolveServer(instance.uuid);
}

/** Everything tether keeps: rows of every table, both domains' XML, the workflows of the stack. */
async function stores(): Promise<string> {
  const parts: Record<string, unknown> = {};
  for (const table of ['instances', 'block_device_mappings', 'volumes', 'volume_attachments']) {
    parts[table] = (await stack.db.query(`SELECT * FROM ${table} ORDER BY 1`)).rows;
  }
  for (const vm of [vmA, vmB]) parts[vm.uuid] = await stack.libvirt.getXml(vm.uuid);
  const workflows: string[] = [];
  for await (const w of stack.client.workflow.list({ query: `TaskQueue = '${stack.controlTaskQueue}'` })) workflows.push(`${w.workflowId}/${w.runId}`);
  parts.workflows = workflows.sort();
  return JSON.stringify(parts);
}

function as(user: TestUser, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, payload?: unknown) {
  return api.inject({ method, url: path, headers: { 'x-auth-token': tokens[user], 'openstack-api-version': path.startsWith('/v3') ? 'volume 3.60' : 'compute 2.89' }, ...(payload ? { payload } : {}) });
}

const attachBody = (volumeId: string) => ({ volumeAttachment: { volumeId } });

async function volumeStatus(id: string, status: VolumeStatus): Promise<void> {
  await expect.poll(async () => (await stack.blockStorage.getVolume(id)).status, { timeout: 60_000, interval: 200 }).toBe(status);
}

beforeAll(async () => {
  stack = await startTestStack();
  identity = await writeIdentityFile();
  api = await buildApi(stack, await keystoneAuthenticator(stack, identity.file));
  url = await api.listen({ host: '127.0.0.1', port: 0 });
  [vmA, vmB] = await Promise.all([server('vm-alpha', ALPHA), server('vm-beta', BETA)]);
  volA = await stack.service.createVolume({ name: 'vol-alpha', size: 1, projectId: ALPHA });
  volA2 = await stack.service.createVolume({ name: 'vol-alpha-2', size: 1, projectId: ALPHA });
  volB = await stack.service.createVolume({ name: 'vol-beta', size: 1, projectId: BETA });
  for (const user of Object.keys(PASSWORDS) as TestUser[]) tokens[user] = await login(api, user);
});

afterAll(async () => {
  await api?.close();
  await identity?.dispose();
  await stack?.stop();
});

describe('a member sees only its project', () => {
  it('lists only its own servers and volumes; all_tenants on servers is a 403, on volumes ignored', async () => {
    const servers = await as('alice', 'GET', '/v2.1/servers/detail');
    expect(servers.json().servers.map((s: { id: string }) => s.id)).toEqual([vmA.uuid]);
    expect(servers.json().servers[0].tenant_id).toBe(ALPHA);
    expect((await as('bob', 'GET', '/v2.1/servers')).json().servers.map((s: { id: string }) => s.id)).toEqual([vmB.uuid]);
    expect((await as('alice', 'GET', '/v2.1/servers?all_tenants=1')).statusCode).toBe(403);
    const volumes = await as('alice', 'GET', '/v3/volumes/detail?all_tenants=1');
    expect(volumes.json().volumes.map((v: { id: string }) => v.id).sort()).toEqual([volA.id, volA2.id].sort());
    expect((await as('bob', 'GET', `/v3/${BETA}/volumes`)).json().volumes.map((v: { id: string }) => v.id)).toEqual([volB.id]);
    // by name, too: another project's names resolve to nothing
    expect((await as('alice', 'GET', '/v2.1/servers?name=vm-beta')).json().servers).toEqual([]);
    expect((await as('alice', 'GET', '/v3/volumes?name=vol-beta')).json().volumes).toEqual([]);
  });

  it("another project's server or volume is a 404, as if it did not exist; a URL with another project is a 400", async () => {
    const before = await stores();
    const notFound = [
      await as('alice', 'GET', `/v2.1/servers/${vmB.uuid}`),
      await as('alice', 'GET', `/v2.1/servers/${vmB.uuid}/os-volume_attachments`),
      await as('alice', 'GET', `/v2.1/servers/${vmB.uuid}/os-volume_attachments/${volB.id}`),
      await as('alice', 'GET', `/v3/volumes/${volB.id}`),
      await as('alice', 'DELETE', `/v3/volumes/${volB.id}`),
    ];
    for (const r of notFound) expect(r.statusCode, r.body).toBe(404);
    expect(notFound[0]!.json()).toEqual({ itemNotFound: { code: 404, message: `Instance ${vmB.uuid} could not be found.` } });
    expect((await as('alice', 'GET', `/v2.1/${BETA}/servers`)).statusCode).toBe(400);
    expect(await stores()).toBe(before);
  });

  it("attaching another project's volume to its own server: 404 for the volume, nothing changed", async () => {
    const before = await stores();
    const r = await as('alice', 'POST', `/v2.1/servers/${vmA.uuid}/os-volume_attachments`, attachBody(volB.id));
    expect(r.statusCode).toBe(404);
    expect(r.json()).toEqual({ itemNotFound: { code: 404, message: `Volume ${volB.id} could not be found.` } });
    expect(await stores()).toBe(before);
  });

  it("attaching its own volume to another project's server, or another's to another's: 404, nothing changed", async () => {
    const before = await stores();
    expect((await as('alice', 'POST', `/v2.1/servers/${vmB.uuid}/os-volume_attachments`, attachBody(volA.id))).statusCode).toBe(404);
    expect((await as('alice', 'POST', `/v2.1/servers/${vmB.uuid}/os-volume_attachments`, attachBody(volB.id))).statusCode).toBe(404);
    expect(await stores()).toBe(before);
  });

  it("attaches its own volume to its own server; another project's member cannot see or detach it (404, nothing changed)", async () => {
    const r = await as('alice', 'POST', `/v2.1/servers/${vmA.uuid}/os-volume_attachments`, attachBody(volA.id));
    expect(r.statusCode, r.body).toBe(200);
    await stack.client.workflow.getHandle(attachWorkflowId(vmA.uuid, volA.id)).result();
    await volumeStatus(volA.id, 'in-use');
    const before = await stores();
    expect((await as('bob', 'DELETE', `/v2.1/servers/${vmA.uuid}/os-volume_attachments/${volA.id}`)).statusCode).toBe(404);
    expect((await as('bob', 'GET', `/v2.1/servers/${vmA.uuid}/os-volume_attachments/${volA.id}`)).statusCode).toBe(404);
    expect((await as('bob', 'GET', `/v3/volumes/${volA.id}`)).statusCode).toBe(404);
    expect(await stores()).toBe(before);
  });
});

describe('a reader', () => {
  it('lists and shows its project but may not attach or detach (403, nothing changed)', async () => {
    expect((await as('rita', 'GET', '/v2.1/servers')).json().servers.map((s: { id: string }) => s.id)).toEqual([vmA.uuid]);
    expect((await as('rita', 'GET', `/v2.1/servers/${vmA.uuid}/os-volume_attachments`)).statusCode).toBe(200);
    expect((await as('rita', 'GET', `/v3/volumes/${volA2.id}`)).statusCode).toBe(200);
    const before = await stores();
    const attach = await as('rita', 'POST', `/v2.1/servers/${vmA.uuid}/os-volume_attachments`, attachBody(volA2.id));
    expect(attach.statusCode).toBe(403);
    expect(attach.json()).toEqual({ forbidden: { code: 403, message: "Policy doesn't allow os_compute_api:os-volumes-attachments:create to be performed." } });
    expect((await as('rita', 'DELETE', `/v2.1/servers/${vmA.uuid}/os-volume_attachments/${volA.id}`)).statusCode).toBe(403);
    expect((await as('rita', 'POST', '/v3/volumes', { volume: { size: 1, name: 'rita-vol' } })).statusCode).toBe(403);
    // another project's server is still a 404 to a reader, not a 403
    expect((await as('rita', 'POST', `/v2.1/servers/${vmB.uuid}/os-volume_attachments`, attachBody(volA2.id))).statusCode).toBe(404);
    expect(await stores()).toBe(before);
  });
});

describe('an admin', () => {
  it('lists every project with all_tenants, its own without; acts on any project', async () => {
    expect((await as('ada', 'GET', '/v2.1/servers')).json().servers.map((s: { id: string }) => s.id)).toEqual([vmA.uuid]);
    const all = await as('ada', 'GET', '/v2.1/servers?all_tenants=true');
    expect(all.json().servers.map((s: { id: string }) => s.id).sort()).toEqual([vmA.uuid, vmB.uuid].sort());
    expect((await as('ada', 'GET', '/v3/volumes?all_tenants=1')).json().volumes).toHaveLength(3);
    expect((await as('ada', 'GET', `/v2.1/servers/${vmB.uuid}`)).json().server.tenant_id).toBe(BETA);
    const r = await as('ada', 'POST', `/v2.1/servers/${vmB.uuid}/os-volume_attachments`, attachBody(volB.id));
    expect(r.statusCode, r.body).toBe(200);
    await stack.client.workflow.getHandle(attachWorkflowId(vmB.uuid, volB.id)).result();
    await volumeStatus(volB.id, 'in-use');
    expect((await as('ada', 'DELETE', `/v2.1/servers/${vmB.uuid}/os-volume_attachments/${volB.id}`)).statusCode).toBe(202);
    await stack.client.workflow.getHandle(detachWorkflowId(vmB.uuid, volB.id)).result();
    await volumeStatus(volB.id, 'available');
  });

  it('volumes created through the API belong to the caller’s project', async () => {
    const r = await as('bob', 'POST', '/v3/volumes', { volume: { size: 1, name: 'bob-made' } });
    expect(r.statusCode).toBe(202);
    expect((await stack.blockStorage.getVolume(r.json().volume.id)).projectId).toBe(BETA);
    expect((await as('alice', 'GET', `/v3/volumes/${r.json().volume.id}`)).statusCode).toBe(404);
    expect((await as('bob', 'DELETE', `/v3/volumes/${r.json().volume.id}`)).statusCode).toBe(202);
  });
});

describe('volume update, metadata, extend, attachments and external events under the policy', () => {
  it("another project's volume is a 404 to every change; a reader may read metadata but not change it (403); nothing changed", async () => {
    const before = await stores();
    for (const [method, path, body] of [
      ['PUT', `/v3/volumes/${volB.id}`, { volume: { name: 'taken' } }],
      ['POST', `/v3/volumes/${volB.id}/metadata`, { metadata: { k: 'v' } }],
      ['DELETE', `/v3/volumes/${volB.id}/metadata/k`, undefined],
      ['POST', `/v3/volumes/${volB.id}/action`, { 'os-extend': { new_size: 2 } }],
      ['GET', `/v3/volumes/${volB.id}/metadata`, undefined],
    ] as const) {
      expect((await as('alice', method, path, body)).statusCode, `${method} ${path}`).toBe(404);
    }
    expect((await as('rita', 'GET', `/v3/volumes/${volA2.id}/metadata`)).statusCode).toBe(200);
    const put = await as('rita', 'PUT', `/v3/volumes/${volA2.id}`, { volume: { name: 'renamed' } });
    expect(put.json()).toEqual({ forbidden: { code: 403, message: "Policy doesn't allow volume:update to be performed." } });
    expect((await as('rita', 'POST', `/v3/volumes/${volA2.id}/action`, { 'os-extend': { new_size: 2 } })).statusCode).toBe(403);
    expect(await stores()).toBe(before);
  });

  it('GET /attachments lists only the own project; another project attachment is a 404', async () => {
    const r = await as('ada', 'POST', `/v2.1/servers/${vmB.uuid}/os-volume_attachments`, attachBody(volB.id));
    expect(r.statusCode, r.body).toBe(200);
    await stack.client.workflow.getHandle(attachWorkflowId(vmB.uuid, volB.id)).result();
    const bobs = (await as('bob', 'GET', '/v3/attachments')).json().attachments as Array<{ id: string; volume_id: string }>;
    expect(bobs.map((a) => a.volume_id)).toEqual([volB.id]);
    expect((await as('alice', 'GET', '/v3/attachments')).json().attachments.map((a: { volume_id: string }) => a.volume_id)).not.toContain(volB.id);
    expect((await as('alice', 'GET', `/v3/attachments/${bobs[0]!.id}`)).statusCode).toBe(404);
    expect((await as('ada', 'GET', '/v3/attachments?all_tenants=1')).json().attachments.map((a: { volume_id: string }) => a.volume_id)).toContain(volB.id);
    expect((await as('ada', 'DELETE', `/v2.1/servers/${vmB.uuid}/os-volume_attachments/${volB.id}`)).statusCode).toBe(202);
    await stack.client.workflow.getHandle(detachWorkflowId(vmB.uuid, volB.id)).result();
  });

  it("os-server-external-events is for the service role (or admins): a member's is a 403; the service user reaches any project's server", async () => {
    const events = { events: [{ name: 'network-changed', server_uuid: vmB.uuid }] };
    expect((await as('alice', 'POST', '/v2.1/os-server-external-events', events)).json()).toEqual({
      forbidden: { code: 403, message: "Policy doesn't allow os_compute_api:os-server-external-events:create to be performed." },
    });
    const svc = await as('svc', 'POST', '/v2.1/os-server-external-events', events);
    expect(svc.statusCode, svc.body).toBe(200);
    expect(svc.json().events).toEqual([{ name: 'network-changed', server_uuid: vmB.uuid, status: 'completed', code: 200 }]);
    expect((await as('ada', 'POST', '/v2.1/os-server-external-events', events)).statusCode).toBe(200);
    // a swap (another volumeId) is the service role's too
    const swap = await as('alice', 'PUT', `/v2.1/servers/${vmA.uuid}/os-volume_attachments/${volA.id}`, { volumeAttachment: { volumeId: volA2.id } });
    expect(swap.statusCode).toBe(403);
  });
});

describe('the tether CLI with --project', () => {
  function tether(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [`${projectRoot}/bin/tether.js`, ...args], { env: { ...process.env, ...stack.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });
  }

  it('a member of beta lists beta only and cannot touch alpha (exit 2, not found, nothing changed); the operator sees all', async () => {
    const listed = await tether(['--json', '--project', BETA, 'server', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).map((s: { uuid: string }) => s.uuid)).toEqual([vmB.uuid]);
    const before = await stores();
    const attach = await tether(['--project', BETA, 'attach', 'vm-alpha', volB.id, '--no-wait']);
    expect(attach.code).toBe(2);
    expect(attach.stderr).toContain('Instance vm-alpha could not be found. (InstanceNotFound)');
    const foreign = await tether(['attach', 'vm-beta', 'vol-alpha-2', '--no-wait'], { TETHER_PROJECT_ID: BETA });
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain('Volume vol-alpha-2 could not be found. (VolumeNotFound)');
    const check = await tether(['--project', BETA, 'check']);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain("Policy doesn't allow tether:check");
    expect(await stores()).toBe(before);
    const operator = await tether(['--json', 'server', 'list']);
    expect(JSON.parse(operator.stdout).map((s: { uuid: string }) => s.uuid).sort()).toEqual([vmA.uuid, vmB.uuid].sort());
  });
});

describe('real clients with password auth', () => {
  const none: Cloud = { env: {}, dispose: async () => undefined };

  it('openstack: server list, server add volume, server volume list, server remove volume, volume list', async () => {
    const flags = passwordFlags(url, 'alice', 'alpha');
    const list = await openstack(none, [...flags, 'server', 'list', '-f', 'json']);
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((s: { ID: string }) => s.ID)).toEqual([vmA.uuid]);

    const add = await openstack(none, [...flags, 'server', 'add', 'volume', 'vm-alpha', 'vol-alpha-2', '-f', 'json']);
    expect(add.code, add.stderr).toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({ 'Server ID': vmA.uuid, 'Volume ID': volA2.id });
    await volumeStatus(volA2.id, 'in-use');

    const attachments = await openstack(none, [...flags, 'server', 'volume', 'list', 'vm-alpha', '--os-compute-api-version', '2.89', '-f', 'json']);
    expect(attachments.code, attachments.stderr).toBe(0);
    expect(JSON.parse(attachments.stdout).map((a: { 'Volume ID': string }) => a['Volume ID']).sort()).toEqual([volA.id, volA2.id].sort());

    const volumes = await openstack(none, [...flags, 'volume', 'list', '-f', 'json']);
    expect(volumes.code, volumes.stderr).toBe(0);
    expect(JSON.parse(volumes.stdout).map((v: { ID: string }) => v.ID).sort()).toEqual([volA.id, volA2.id].sort());

    // another project's volume is not found for alice's CLI either
    const foreign = await openstack(none, [...flags, 'server', 'add', 'volume', 'vm-alpha', volB.id]);
    expect(foreign.code).not.toBe(0);

    const remove = await openstack(none, [...flags, 'server', 'remove', 'volume', 'vm-alpha', 'vol-alpha-2']);
    expect(remove.code, remove.stderr).toBe(0);
    await volumeStatus(volA2.id, 'available');

    const wrong = await openstack(none, [...passwordFlags(url, 'alice', 'alpha').map((f) => (f === PASSWORDS.alice ? 'wrong-password' : f)), 'server', 'list']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/401|authentication/i);
  });

  it('nova: list and volume-attachments with password auth', async () => {
    const env = {
      OS_AUTH_URL: `${url}/identity/v3`,
      OS_USERNAME: 'bob',
      OS_PASSWORD: PASSWORDS.bob,
      OS_PROJECT_NAME: 'beta',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_NAME: 'Default',
    };
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile('/usr/bin/nova', args, { env: { PATH: '/usr/bin:/bin', HOME: '/tmp', LANG: 'C.UTF-8', ...env }, timeout: 120_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
        ),
      );
    const list = await run(['list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(vmB.uuid);
    expect(list.stdout).not.toContain(vmA.uuid);
    const attachments = await run(['volume-attachments', vmB.uuid]);
    expect(attachments.code, attachments.stderr).toBe(0);
    const foreign = await run(['volume-attachments', vmA.uuid]);
    expect(foreign.code).not.toBe(0);
    expect(foreign.stderr).toMatch(/could not be found|No server with a name or ID/);
  });
});
