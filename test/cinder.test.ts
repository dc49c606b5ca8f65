/**
 * tether on a real Cinder (Debian's cinder packages, see test/support/cinder.ts): the attach and
 * detach sagas, a failure at every attach step rolling back, 10 concurrent attaches to one instance,
 * and after every scenario Cinder's own view of each volume (GET volume: status, attachments[];
 * GET /attachments) must match tether's block device mappings exactly.
 * Real Temporal dev server, real PostgreSQL, real libvirt + QEMU, real Cinder.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTestStack, startCinderStack, type CinderStack } from './support/cinder-stack.ts';
import { cinderAvailability } from './support/cinder.ts';
import { needs } from './support/skips.ts';
import { ATTACH_FAULT_POINTS, runningServer, storesOf, volume } from './support/fixtures.ts';
import { openstack, openstackJson, startTestApi, type Cloud, type RunningApi } from './support/clouds.ts';
import { findFreePort } from '../stack/free-port.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { extendWorkflowId } from '../src/domain/steps.ts';
import { CinderBlockStorage } from '../src/blockstorage/cinder/cinder-block-storage.ts';
import { OVER_QUOTA_TYPE } from '../src/blockstorage/cinder/errors.ts';
import { bdmConnectionInfo } from '../src/db/block-device-mappings.ts';
import { TetherError } from '../src/errors.ts';
import { formatDisagreements, inspectInvariants } from '../src/checker/invariants.ts';
import type { HostConnector, Instance, Volume } from '../src/domain/types.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const availability = await cinderAvailability();

const SECRET = `tether-cinder-secret-${Date.now()}`;
const say = (line: string) => console.log(`[cinder.test] ${line}`);
const ms = (t0: number) => Math.round(performance.now() - t0);

let stack: CinderStack;
let vm: Instance;
/** tether's API, where Cinder's [nova] section points: Cinder tells it about volumes it extended. */
let novaApi: RunningApi;

interface CinderVolumeView {
  status: string;
  attachments: Array<{ attachment_id: string; server_id: string; device: string | null; host_name: string | null }>;
}

/** Cinder's own view (raw API, not tether's client) against tether's live BDMs, volume by volume. */
async function expectAgreement(volumeIds: string[]): Promise<void> {
  for (const id of volumeIds) {
    const got = await stack.cinder.api<{ volume: CinderVolumeView }>('GET', `/volumes/${id}`);
    expect(got.status, `GET volume ${id}`).toBe(200);
    const listed = await stack.cinder.api<{ attachments: Array<{ id: string; instance: string; status: string }> }>('GET', `/attachments?volume_id=${id}`);
    const { rows: bdms } = await stack.db.query<{ instance_uuid: string; attachment_id: string | null; attach_status: string }>(
      'SELECT instance_uuid, attachment_id, attach_status FROM block_device_mappings WHERE volume_id = $1 AND deleted_at IS NULL ORDER BY instance_uuid',
      [id],
    );
    const sort = (xs: string[]) => [...xs].sort();
    if (bdms.length === 0) {
      expect({ status: got.body.volume.status, attachments: got.body.volume.attachments, listed: listed.body.attachments }, `volume ${id}`).toEqual({
        status: 'available',
        attachments: [],
        listed: [],
      });
    } else {
      expect(bdms.map((b) => b.attach_status), `BDMs of ${id}`).toEqual(bdms.map(() => 'attached'));
      expect(got.body.volume.status, `volume ${id}`).toBe('in-use');
      const fromBdms = sort(bdms.map((b) => `${b.attachment_id}:${b.instance_uuid}`));
      expect(sort(got.body.volume.attachments.map((a) => `${a.attachment_id}:${a.server_id}`)), `attachments of ${id}`).toEqual(fromBdms);
      expect(sort(listed.body.attachments.map((a) => `${a.id}:${a.instance}:${a.status}`)), `GET /attachments of ${id}`).toEqual(fromBdms.map((x) => `${x}:attached`));
    }
  }
}

async function attach(server: string, volumeId: string, extra: { device?: string; deleteOnTermination?: boolean } = {}) {
  const started = await stack.service.attachVolume({ server, volume: volumeId, device: extra.device ?? null, deleteOnTermination: extra.deleteOnTermination ?? false });
  return stack.service.awaitAttach(started.handle);
}

async function detach(server: string, volumeId: string) {
  const { handle } = await stack.service.detachVolume({ server, volume: volumeId });
  return stack.service.awaitDetach(handle);
}

const newVolume = (name: string): Promise<Volume> => volume(asTestStack(stack), name);

/**
 * A clouds.yaml with compute at tether and block storage at Cinder. noauth Cinder wants
 * `X-Auth-Token: <user>:<project>`: the admin_token plugin sends exactly that (tether's API ignores it);
 * with Keystone this is a normal password cloud with the same two overrides. The block-storage override
 * has no project id: openstacksdk's version discovery cannot strip one it does not know (no Keystone
 * token), and Cinder (>= Yoga, 3.67) routes project-less URLs.
 */
async function cinderCloud(apiUrl: string): Promise<Cloud> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-cinder-clouds-'));
  const file = path.join(dir, 'clouds.yaml');
  await writeFile(
    file,
    [
      'clouds:',
      '  tether:',
      '    auth_type: admin_token',
      '    auth:',
      `      endpoint: ${apiUrl}/v2.1`,
      `      token: ${stack.cinder.user}:${stack.cinder.projectId}`,
      `    compute_endpoint_override: ${apiUrl}/v2.1`,
      `    block_storage_endpoint_override: ${stack.cinder.endpoint.replace(/\/[0-9a-f]{32}$/, '')}`,
      "    block_storage_api_version: '3'",
      '',
    ].join('\n'),
  );
  return { env: { OS_CLIENT_CONFIG_FILE: file, OS_CLOUD: 'tether' }, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** The capacity libvirt reports for the volume's disk in the running domain (virDomainGetBlockInfo). */
async function capacity(instanceUuid: string, volumeId: string): Promise<number | null> {
  const disk = diskBySerial(await stack.libvirt.getXml(instanceUuid), volumeId);
  return disk?.target ? (await stack.libvirt.blockInfo(instanceUuid, disk.target)).capacity : null;
}
const stores = (uuid: string) => storesOf(asTestStack(stack), uuid);

describe('tether on a real Cinder', needs('cinder', availability.available ? null : availability.reason), () => {
  beforeAll(async () => {
    const t0 = performance.now();
    // a small page size so that listing volumes has to follow Cinder's `next` links; [nova] at tether's API
    const novaPort = await findFreePort();
    stack = await startCinderStack({
      detachUnplugWaitMs: 1_500,
      cinder: { fakeSecret: SECRET, extraDefaults: { osapi_max_limit: 5 }, novaEndpoint: `http://127.0.0.1:${novaPort}/v2.1` },
    });
    novaApi = await startTestApi(asTestStack(stack), { port: novaPort });
    const t = stack.cinder.timings;
    say(
      `Cinder (${stack.cinder.mode} process${stack.cinder.mode === 'single' ? '' : 'es'}, MariaDB, driver ${stack.cinder.driver}) ready in ${Math.round(t.totalMs)} ms: ` +
        `schema ${Math.round(t.schemaMs)} ms${t.schemaFromCache ? ' (cached dump)' : ' (db sync)'}, API ${Math.round(t.apiMs)} ms, services up ${Math.round(t.servicesMs)} ms, ` +
        `probe volume ${Math.round(t.probeMs)} ms; ${stack.cinder.rssMiB()} MiB resident; whole stack ${ms(t0)} ms`,
    );
    vm = await runningServer(asTestStack(stack), 'vm-cinder');
  }, 300_000);

  afterAll(async () => {
    await novaApi?.close();
    await stack?.stop();
  }, 60_000);

  describe('the attach and detach sagas', () => {
    it('attach: disk in the domain, BDM attached, Cinder in-use with the same attachment, device and host', async () => {
      const v = await newVolume('data-1');
      expect(v).toMatchObject({ status: 'available', availabilityZone: 'nova', attachments: [] });
      const t0 = performance.now();
      const result = await attach(vm.uuid, v.id);
      say(`attach saga through Cinder: ${ms(t0)} ms`);
      expect(result.device).toBe('/dev/sdb');

      const { bdms, liveDisks, configDisks } = await stores(vm.uuid);
      expect(bdms.find((b) => b.volumeId === v.id)).toMatchObject({ deviceName: '/dev/sdb', attachStatus: 'attached', attachmentId: result.attachmentId });
      expect(liveDisks.find((d) => d.serial === v.id)?.target).toBe('sdb');
      expect(configDisks.find((d) => d.serial === v.id)?.target).toBe('sdb');

      const seen = await stack.cinder.api<{ volume: CinderVolumeView }>('GET', `/volumes/${v.id}`);
      expect(seen.body.volume).toMatchObject({
        status: 'in-use',
        attachments: [expect.objectContaining({ attachment_id: result.attachmentId, server_id: vm.uuid, device: '/dev/sdb', host_name: stack.host })],
      });
      expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({
        status: 'in-use',
        attachments: [expect.objectContaining({ attachmentId: result.attachmentId, serverId: vm.uuid, device: '/dev/sdb' })],
      });
      await expectAgreement([v.id]);

      // detach
      const t1 = performance.now();
      await detach(vm.uuid, v.id);
      say(`detach saga through Cinder: ${ms(t1)} ms`);
      const after = await stores(vm.uuid);
      expect(after.bdms.filter((b) => b.volumeId === v.id)).toEqual([]);
      expect(after.liveDisks.filter((d) => d.serial === v.id)).toEqual([]);
      expect(after.configDisks.filter((d) => d.serial === v.id)).toEqual([]);
      await expectAgreement([v.id]);

      // and attach again
      const again = await attach(vm.uuid, v.id);
      expect(again.device).toBe('/dev/sdb');
      expect(again.attachmentId).not.toBe(result.attachmentId);
      await expectAgreement([v.id]);
      await detach(vm.uuid, v.id);
      await expectAgreement([v.id]);
    });

    it('connection_info reaches the BDM but never the workflow history nor the client log', async () => {
      const v = await newVolume('secret');
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      await stack.service.awaitAttach(started.handle);
      const bdm = (await stores(vm.uuid)).bdms.find((b) => b.volumeId === v.id)!;
      const info = await bdmConnectionInfo(stack.db, bdm.uuid);
      expect(info).toMatchObject({ driver_volume_type: 'file', data: { auth_password: SECRET, format: 'raw' }, serial: v.id });
      const history = JSON.stringify(await started.handle.fetchHistory());
      expect(history).not.toContain(SECRET);
      expect(stack.clientLog.length).toBeGreaterThan(0);
      expect(stack.clientLog.join('\n')).not.toContain(SECRET);
      await detach(vm.uuid, v.id);
      await expectAgreement([v.id]);
    });

    it('a failed libvirt detach rolls Cinder back to in-use (os-roll_detaching); the BDM and disk stay', async () => {
      const v = await newVolume('detach-fails');
      await attach(vm.uuid, v.id);
      stack.faults.inject('detachDisk', 'after', { times: 1 });
      const err = await detach(vm.uuid, v.id).catch((e: unknown) => e);
      stack.faults.clear();
      expect((err as Error).message).toMatch(/failed at step detachDisk: Injected fault after step detachDisk \(the volume stays attached\)/);
      expect((await stores(vm.uuid)).liveDisks.filter((d) => d.serial === v.id)).toHaveLength(1);
      await expectAgreement([v.id]);
      await detach(vm.uuid, v.id);
      await expectAgreement([v.id]);
    });

    it('deleting the server detaches everything and deletes the delete_on_termination volume in Cinder', async () => {
      const target = await runningServer(asTestStack(stack), 'vm-cinder-delete');
      const keep = await newVolume('keep');
      const drop = await newVolume('drop');
      await attach(target.uuid, keep.id);
      await attach(target.uuid, drop.id, { deleteOnTermination: true });
      await expectAgreement([keep.id, drop.id]);
      const { deletedVolumes } = await stack.service.deleteServer(target.uuid);
      expect(deletedVolumes).toEqual([drop.id]);
      await expectAgreement([keep.id]);
      expect((await stack.cinder.api('GET', `/volumes/${drop.id}`)).status).toBe(404);
      await expect(stack.blockStorage.getVolume(drop.id)).rejects.toMatchObject({ type: 'VolumeNotFound' });
    });
  });

  describe('the Debian openstack CLI: compute at tether, block storage at Cinder', () => {
    it('volume create (Cinder), server add volume (tether → Cinder), volume show, server remove volume', async () => {
      const api = await startTestApi(asTestStack(stack));
      const cloud = await cinderCloud(api.url);
      try {
        const created = await openstackJson<{ id: string }>(cloud, ['volume', 'create', '--size', '1', 'osc-cinder']);
        const status = async () => (await stack.cinder.api<{ volume: CinderVolumeView }>('GET', `/volumes/${created.id}`)).body.volume.status;
        await expect.poll(status, { timeout: 30_000, interval: 200 }).toBe('available');
        const added = await openstackJson<Record<string, unknown>>(cloud, ['server', 'add', 'volume', 'vm-cinder', 'osc-cinder']);
        expect(added).toMatchObject({ 'Server ID': vm.uuid, 'Volume ID': created.id, Device: expect.stringMatching(/^\/dev\/sd[a-z]$/) });
        await expect.poll(status, { timeout: 60_000, interval: 200 }).toBe('in-use');
        const shown = await openstackJson<{ status: string; attachments: Array<{ server_id: string; device: string }> }>(cloud, ['volume', 'show', 'osc-cinder']);
        expect(shown).toMatchObject({ status: 'in-use', attachments: [expect.objectContaining({ server_id: vm.uuid, device: added.Device })] });
        await expectAgreement([created.id]);
        const removed = await openstack(cloud, ['server', 'remove', 'volume', 'vm-cinder', 'osc-cinder']);
        expect(removed.code, removed.stderr).toBe(0);
        await expect.poll(status, { timeout: 60_000, interval: 200 }).toBe('available');
        await expect.poll(async () => (await stores(vm.uuid)).bdms.filter((b) => b.volumeId === created.id), { timeout: 30_000, interval: 200 }).toEqual([]);
        await expectAgreement([created.id]);
      } finally {
        await cloud.dispose();
        await api.close();
      }
    }, 240_000);
  });

  describe("online extend: Cinder grows an in-use volume, then tells tether (its [nova] section: os-server-external-events)", () => {
    it('openstack volume set --size at 3.42 against Cinder: the running domain sees the new size; Cinder, the BDM and libvirt agree', async () => {
      const v = await newVolume('extend-online');
      await attach(vm.uuid, v.id);
      expect(await capacity(vm.uuid, v.id)).toBe(1024 ** 3);
      const cloud = await cinderCloud(novaApi.url);
      try {
        const set = await openstack(cloud, ['--os-volume-api-version', '3.42', 'volume', 'set', '--size', '2', v.id]);
        expect(set.code, set.stderr).toBe(0);
      } finally {
        await cloud.dispose();
      }
      const t0 = performance.now();
      // Cinder: extending → in-use at 2 GiB, then its nova client posts volume-extended to tether
      await expect.poll(async () => (await stack.cinder.api<{ volume: { status: string; size: number } }>('GET', `/volumes/${v.id}`)).body.volume, { timeout: 60_000, interval: 200 }).toMatchObject({
        status: 'in-use',
        size: 2,
      });
      await expect.poll(() => capacity(vm.uuid, v.id), { timeout: 60_000, interval: 200 }).toBe(2 * 1024 ** 3);
      say(`online extend through Cinder and its volume-extended event: disk grown ${ms(t0)} ms after Cinder's answer`);
      // the disk has grown; the saga ends with the size recorded on the BDM
      expect(await stack.service.awaitExtend(stack.client.workflow.getHandle(extendWorkflowId(vm.uuid, v.id)))).toMatchObject({ size: 2, live: true, capacity: 2 * 1024 ** 3 });
      expect(await liveBdm(stack.db, vm.uuid, v.id)).toMatchObject({ volumeSize: 2, attachStatus: 'attached' });
      await expectAgreement([v.id]);
      await detach(vm.uuid, v.id);
      await expectAgreement([v.id]);
    }, 180_000);

    it("tether's own os-extend is Cinder's job here: an in-use extend through tether is refused (501), nothing changes", async () => {
      const v = await newVolume('extend-not-here');
      await attach(vm.uuid, v.id);
      await expect(stack.service.extendVolume({ volume: v.id, newSize: 2, inUse: true })).rejects.toMatchObject({ status: 501 });
      expect(await capacity(vm.uuid, v.id)).toBe(1024 ** 3);
      await detach(vm.uuid, v.id);
    });
  });

  describe('multiattach', () => {
    it('a multiattach volume (Cinder volume type) attached to two servers: two attachments, a shareable disk in each', async () => {
      const other = await runningServer(asTestStack(stack), 'vm-cinder-multi');
      const v = await stack.service.createVolume({ name: 'shared', size: 1, multiattach: true });
      expect(v).toMatchObject({ multiattach: true, status: 'available' });
      await attach(vm.uuid, v.id);
      await attach(other.uuid, v.id);
      await expectAgreement([v.id]);
      for (const uuid of [vm.uuid, other.uuid]) {
        const disk = (await stores(uuid)).liveDisks.find((d) => d.serial === v.id);
        expect(disk?.xml).toContain('<shareable/>');
      }
      await detach(vm.uuid, v.id);
      await expectAgreement([v.id]);
      expect((await stack.blockStorage.getVolume(v.id)).status).toBe('in-use');
      await detach(other.uuid, v.id);
      await expectAgreement([v.id]);
      await stack.service.deleteServer(other.uuid);
    });
  });

  describe('shelve and volume lookups', () => {
    it('shelve-offload keeps the volume reserved in Cinder for the instance; unshelve attaches it again', async () => {
      const target = await runningServer(asTestStack(stack), 'vm-cinder-shelve');
      const v = await newVolume('shelved');
      await attach(target.uuid, v.id);
      await stack.service.shelveServer(target.uuid);
      await stack.service.shelveOffloadServer(target.uuid);
      const bdm = (await stack.db.query<{ attachment_id: string }>('SELECT attachment_id FROM block_device_mappings WHERE volume_id = $1 AND deleted_at IS NULL', [v.id])).rows[0]!;
      const seen = await stack.cinder.api<{ volume: CinderVolumeView }>('GET', `/volumes/${v.id}`);
      expect(seen.body.volume).toMatchObject({ status: 'reserved', attachments: [] });
      const listed = await stack.cinder.api<{ attachments: Array<{ id: string; instance: string; status: string }> }>('GET', `/attachments?volume_id=${v.id}`);
      expect(listed.body.attachments).toEqual([{ id: bdm.attachment_id, instance: target.uuid, status: 'reserved', volume_id: v.id }]);

      const { devices } = await stack.service.unshelveServer(target.uuid);
      expect(devices[v.id]).toMatch(/^\/dev\/sd[a-z]$/);
      await expectAgreement([v.id]);
      await stack.service.deleteServer(target.uuid);
      await expectAgreement([v.id]);
    });

    it('finds volumes by name and lists them all, following Cinder\'s pages', async () => {
      const made = await Promise.all(Array.from({ length: 7 }, (_, i) => newVolume(`page-${i}`)));
      expect((await stack.service.resolveVolume('page-3')).id).toBe(made[3]!.id);
      const all = await stack.blockStorage.listVolumes();
      const ids = all.map((v) => v.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const v of made) expect(ids).toContain(v.id);
      expect(all.length).toBeGreaterThan(5);
      await expect(stack.service.resolveVolume('no-such-volume')).rejects.toMatchObject({ type: 'VolumeNotFound' });
    });
  });

  describe('a failure injected at each attach step rolls back, in Cinder too', () => {
    const cases = ATTACH_FAULT_POINTS;
    it.each(cases)('failing %s (%s it runs): no BDM, no disk, Cinder available with no attachment', async (step, phase) => {
      const v = await newVolume(`fail-${step}-${phase}`);
      stack.faults.inject(step, phase, { times: 1 });
      try {
        const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id }).catch((err: unknown) => err as Error);
        if (started instanceof Error) {
          expect(started.message).toMatch(new RegExp(`Injected fault ${phase} step ${step}`));
        } else {
          const err = await stack.service.awaitAttach(started.handle).catch((e: unknown) => e);
          expect((err as Error).message).toMatch(new RegExp(`failed at step \\w+: Injected fault ${phase} step ${step} \\(everything was rolled back\\)`));
        }
      } finally {
        stack.faults.clear();
      }
      const { bdms, liveDisks, configDisks } = await stores(vm.uuid);
      expect(bdms.filter((b) => b.volumeId === v.id)).toEqual([]);
      expect(liveDisks.filter((d) => d.serial === v.id)).toEqual([]);
      expect(configDisks.filter((d) => d.serial === v.id)).toEqual([]);
      await expectAgreement([v.id]);
    });
  });

  describe('concurrency', () => {
    it('10 concurrent attaches of different volumes to one instance: 10 devices, 10 Cinder attachments, all agreeing', async () => {
      const target = await runningServer(asTestStack(stack), 'vm-cinder-concurrent');
      const t0 = performance.now();
      const volumes = await Promise.all(Array.from({ length: 10 }, (_, i) => newVolume(`conc-${i}`)));
      const createMs = ms(t0);
      const t1 = performance.now();
      const started = await Promise.all(volumes.map((v) => stack.service.attachVolume({ server: target.uuid, volume: v.id })));
      const results = await Promise.all(started.map((s) => stack.service.awaitAttach(s.handle)));
      const attachMs = ms(t1);
      say(`10 concurrent volume creates in Cinder: ${createMs} ms; 10 concurrent attaches to one instance: ${attachMs} ms`);
      expect(new Set(results.map((r) => r.device)).size).toBe(10);
      const { bdms, liveDisks } = await stores(target.uuid);
      expect(bdms).toHaveLength(10);
      expect(new Set(liveDisks.map((d) => d.target)).size).toBe(10);
      await expectAgreement(volumes.map((v) => v.id));

      const t2 = performance.now();
      await Promise.all(volumes.map((v) => detach(target.uuid, v.id)));
      say(`10 concurrent detaches from one instance: ${ms(t2)} ms`);
      expect((await stores(target.uuid)).bdms).toEqual([]);
      await expectAgreement(volumes.map((v) => v.id));
    }, 240_000);
  });

  describe("Cinder's refusals and tether's idempotency, call by call", () => {
    const fakeInstance = () => crypto.randomUUID();
    const connector: HostConnector = { ip: '127.0.0.1', host: 'bench-host', initiator: 'iqn.1993-08.org.debian:01:bench', multipath: false, platform: 'x86_64', os_type: 'linux', do_local_attach: false };

    it('repeats change nothing; a second instance is refused with VolumeNotAvailable; gone attachments are no-ops', async () => {
      const bs = stack.blockStorage;
      const v = await newVolume('calls');
      const a = fakeInstance();
      const first = await bs.createAttachment(v.id, a);
      expect(await bs.createAttachment(v.id, a)).toEqual(first);
      expect(await bs.findAttachment(v.id, a)).toEqual(first);
      await bs.updateAttachment(first.attachmentId, { ...connector, mountpoint: '/dev/sdb' });
      await bs.updateAttachment(first.attachmentId, { ...connector, mountpoint: '/dev/sdb' });
      await bs.completeAttachment(first.attachmentId);
      await bs.completeAttachment(first.attachmentId);
      expect(await bs.getVolume(v.id)).toMatchObject({ status: 'in-use', attachments: [expect.objectContaining({ attachmentId: first.attachmentId, serverId: a })] });

      const other = await bs.createAttachment(v.id, fakeInstance()).catch((e: unknown) => e);
      expect(other).toBeInstanceOf(TetherError);
      expect(other).toMatchObject({ type: 'VolumeNotAvailable', status: 400, message: expect.stringMatching(/status must be available or downloading to reserve, but the current status is in-use/) });

      await bs.rollDetaching(v.id); // not detaching: nothing to roll back
      await bs.beginDetaching(v.id);
      await bs.beginDetaching(v.id);
      expect((await bs.getVolume(v.id)).status).toBe('detaching');
      await bs.rollDetaching(v.id);
      expect((await bs.getVolume(v.id)).status).toBe('in-use');
      await bs.beginDetaching(v.id);
      // attached + connection_info: Cinder wants the service role (CVE-2023-2088) — tether sends it
      await bs.deleteAttachment(first.attachmentId);
      await bs.deleteAttachment(first.attachmentId);
      expect(await bs.getVolume(v.id)).toMatchObject({ status: 'available', attachments: [] });
      expect(await bs.findAttachment(v.id, a)).toBeNull();
      await expect(bs.beginDetaching(v.id)).rejects.toMatchObject({ type: 'VolumeNotAvailable', message: expect.stringMatching(/current status is: available/) });
      await expect(bs.completeAttachment(first.attachmentId)).rejects.toMatchObject({ type: 'VolumeNotAvailable' });
      await expect(bs.getVolume(crypto.randomUUID())).rejects.toMatchObject({ type: 'VolumeNotFound', status: 404 });
      await expect(bs.createAttachment(crypto.randomUUID(), a)).rejects.toMatchObject({ type: 'VolumeNotFound' });
      await bs.deleteVolume(v.id);
      await expect(bs.deleteVolume(v.id)).rejects.toMatchObject({ type: 'VolumeNotFound' });
    });

    it('without the service role Cinder refuses to delete an attached attachment (so tether must send it)', async () => {
      const plain = new CinderBlockStorage(stack.cinder.config({ CINDER_SERVICE_TOKEN: 'off' }));
      const v = await newVolume('no-service-role');
      const ref = await plain.createAttachment(v.id, fakeInstance());
      await plain.updateAttachment(ref.attachmentId, connector);
      await plain.completeAttachment(ref.attachmentId);
      const err = await plain.deleteAttachment(ref.attachmentId).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(TetherError); // a 500: retryable, not a business refusal
      expect((await plain.getVolume(v.id)).status).toBe('in-use');
      await stack.blockStorage.deleteAttachment(ref.attachmentId);
      expect((await plain.getVolume(v.id)).status).toBe('available');
    });

    it('over quota (413) becomes a business error that says so', async () => {
      const project = crypto.randomUUID().replaceAll('-', '');
      const set = await stack.cinder.api('PUT', `/os-quota-sets/${project}`, { quota_set: { volumes: 0 } });
      expect(set.status).toBe(200);
      const other = new CinderBlockStorage(stack.cinder.config({ CINDER_PROJECT_ID: project, CINDER_ENDPOINT: stack.cinder.endpoint.replace(stack.cinder.projectId, project) }));
      const err = await other.createVolume({ name: 'q', size: 1, projectId: project }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TetherError);
      expect(err).toMatchObject({ type: OVER_QUOTA_TYPE, message: expect.stringMatching(/^Quota exceeded: .*exceeded for quota 'volumes'/) });
    });

    it('negotiates the microversion from the versions document', async () => {
      expect(await stack.blockStorage.check()).toEqual({ max: '3.70', min: '3.0' });
    });

    it('per-call latencies (median of 5)', async () => {
      const bs = stack.blockStorage;
      const samples: Record<string, number[]> = {};
      const time = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
        const t0 = performance.now();
        const r = await fn();
        (samples[name] ??= []).push(performance.now() - t0);
        return r;
      };
      for (let i = 0; i < 5; i++) {
        const v = await time('createVolume (→ available)', () => bs.createVolume({ name: `lat-${i}`, size: 1, projectId: stack.cinder.projectId }));
        const inst = fakeInstance();
        await time('getVolume', () => bs.getVolume(v.id));
        await time('findAttachment (none)', () => bs.findAttachment(v.id, inst));
        const ref = await time('createAttachment (list + POST)', () => bs.createAttachment(v.id, inst));
        await time('updateAttachment (PUT, RPC to volume)', () => bs.updateAttachment(ref.attachmentId, { ...connector, mountpoint: '/dev/sdb' }));
        await time('completeAttachment (os-complete)', () => bs.completeAttachment(ref.attachmentId));
        await time('beginDetaching', () => bs.beginDetaching(v.id));
        await time('rollDetaching', () => bs.rollDetaching(v.id));
        await bs.beginDetaching(v.id);
        await time('deleteAttachment (attached, service role)', () => bs.deleteAttachment(ref.attachmentId));
        await time('deleteAttachment (gone: 404 no-op)', () => bs.deleteAttachment(ref.attachmentId));
        await time('deleteVolume (→ gone)', () => bs.deleteVolume(v.id));
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      say(`per-call latency, median of 5 (${stack.cinder.mode} mode):\n${Object.entries(samples).map(([k, xs]) => `    ${k.padEnd(44)} ${median(xs).toFixed(1)} ms`).join('\n')}`);
    }, 120_000);
  });

  describe('after everything', () => {
    it("tether's own invariant checker finds Cinder, the BDMs and libvirt in agreement", async () => {
      const report = await inspectInvariants({
        db: stack.db,
        blockStorage: stack.blockStorage,
        libvirt: stack.libvirt,
        client: stack.client,
        controlTaskQueue: stack.controlTaskQueue,
        host: stack.host,
      });
      expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
      expect(report.inFlight, formatDisagreements(report.inFlight)).toEqual([]);
    });
  });
});
