/**
 * The compute host's activities in isolation (MockActivityEnvironment): a real PostgreSQL, a fake
 * libvirt that records what it is asked, so the storage-secret path (CHAP over iSCSI) and the
 * idempotency of the device reservation can be checked without an iSCSI target.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from './support/test-database.ts';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createHostActivities, type ReservedDevice } from '../activities/host.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { insertInstance, setInstanceState } from '../src/db/instances.ts';
import { insertVolumeBdm, updateBdm } from '../src/db/block-device-mappings.ts';
import { FaultInjector } from '../faults/injector.ts';
import { authSecretUuid, encryptionSecretUuid } from '../src/host/disk-secrets.ts';
import { VolumeEncryptionError } from '../src/blockstorage/block-storage.ts';
import type { LibvirtConnection } from '../src/libvirt/binding.ts';

/** Just enough of libvirt: one running domain whose disks are kept as XML elements. */
class FakeLibvirt {
  disks: string[] = [];
  secrets = new Map<string, { xml: string; value: string }>();
  undefinedSecrets: string[] = [];
  async lookupDomain(uuid: string) {
    return { uuid, name: 'fake', state: 'running' as const, active: true, persistent: true };
  }
  async getXml() {
    return `<domain><devices>${this.disks.join('')}</devices></domain>`;
  }
  async attachDevice(_uuid: string, xml: string) {
    this.disks.push(xml);
  }
  async detachDevice(_uuid: string, xml: string) {
    this.disks = this.disks.filter((d) => !d.includes(xml));
  }
  async defineSecret(xml: string, value: Buffer) {
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)![1]!;
    this.secrets.set(uuid, { xml, value: value.toString('utf8') });
    return uuid;
  }
  async undefineSecret(uuid: string) {
    this.undefinedSecrets.push(uuid);
    this.secrets.delete(uuid);
  }
}

let db: Database;

beforeAll(async () => {
  db = createDatabase(await createTestDatabase('tether_unit'));
});

afterAll(async () => {
  await db?.end();
});

async function instance(): Promise<string> {
  const uuid = randomUUID();
  await insertInstance(db, {
    uuid,
    name: 'unit',
    projectId: 'p',
    host: 'h',
    availabilityZone: 'nova',
    libvirtDomain: 'fake',
    rootDeviceName: '/dev/sda',
    defaultDiskBus: 'scsi',
  });
  await setInstanceState(db, uuid, { vmState: 'active', taskState: null });
  return uuid;
}

function activities(libvirt: FakeLibvirt) {
  return createHostActivities({ db, libvirt: libvirt as unknown as LibvirtConnection, host: 'h', faults: new FaultInjector() });
}

describe('attachDisk with a CHAP-protected iSCSI volume', () => {
  it('puts the password in a libvirt secret, only its UUID in the disk XML, and removes the secret on detach', async () => {
    const libvirt = new FakeLibvirt();
    const acts = activities(libvirt);
    const instanceUuid = await instance();
    const volumeId = randomUUID();
    const bdmUuid = randomUUID();
    await insertVolumeBdm(db, { uuid: bdmUuid, instanceUuid, volumeId, deviceName: '/dev/sdb', diskBus: 'scsi', deviceType: 'disk', tag: null, deleteOnTermination: false, operationId: 'op' });
    await updateBdm(db, bdmUuid, {
      connectionInfo: {
        driver_volume_type: 'iscsi',
        data: {
          target_portal: '192.0.2.10:3260',
          target_iqn: 'iqn.2010-10.org.openstack:volume-x',
          target_lun: 1,
          auth_method: 'CHAP',
          auth_username: 'chap-user',
          auth_password: 's3cr3t-chap-password',
          access_mode: 'rw',
        },
      },
    });
    const env = new MockActivityEnvironment();
    const result = await env.run(acts.attachDisk, { instanceUuid, bdmUuid, volumeId });
    expect(result).toEqual({ target: 'sdb', live: true });
    const secretUuid = authSecretUuid(volumeId);
    expect(libvirt.secrets.get(secretUuid)).toMatchObject({ value: 's3cr3t-chap-password' });
    expect(libvirt.disks).toHaveLength(1);
    expect(libvirt.disks[0]).toContain(`uuid='${secretUuid}'`);
    expect(libvirt.disks[0]).not.toContain('s3cr3t-chap-password');

    // attaching again changes nothing (the disk is found by its serial)
    await env.run(acts.attachDisk, { instanceUuid, bdmUuid, volumeId });
    expect(libvirt.disks).toHaveLength(1);

    await env.run(acts.detachDisk, { instanceUuid, volumeId });
    expect(libvirt.disks).toEqual([]);
    // the volume's secrets are removed (the LUKS one is a no-op for a plain volume)
    expect(libvirt.undefinedSecrets).toEqual([secretUuid, encryptionSecretUuid(volumeId)]);
  });
});

describe('attachDisk with an encrypted volume', () => {
  async function encryptedBdm(): Promise<{ instanceUuid: string; volumeId: string; bdmUuid: string }> {
    const instanceUuid = await instance();
    const volumeId = randomUUID();
    const bdmUuid = randomUUID();
    await insertVolumeBdm(db, { uuid: bdmUuid, instanceUuid, volumeId, deviceName: '/dev/sdb', diskBus: 'scsi', deviceType: 'disk', tag: null, deleteOnTermination: false, operationId: 'op' });
    await updateBdm(db, bdmUuid, {
      connectionInfo: { driver_volume_type: 'file', data: { path: `/srv/volume-${volumeId}.qcow2`, format: 'qcow2', encrypted: true, access_mode: 'rw' } },
    });
    return { instanceUuid, volumeId, bdmUuid };
  }
  const key = Buffer.alloc(64, 0xab);
  const encryption = { provider: 'luks' as const, cipher: 'aes-xts-plain64', keySize: 512, controlLocation: 'front-end' as const, encryptionKeyId: randomUUID() };

  it('puts the hex of the key into a private passphrase secret (usage volume = the file) and names only its UUID in <encryption>', async () => {
    const libvirt = new FakeLibvirt();
    const asked: string[] = [];
    const acts = createHostActivities({
      db,
      libvirt: libvirt as unknown as LibvirtConnection,
      host: 'h',
      faults: new FaultInjector(),
      volumeEncryption: {
        getVolumeEncryption: async (id) => (asked.push(id), encryption),
        getEncryptionKey: async () => Buffer.from(key),
      },
    });
    const { instanceUuid, volumeId, bdmUuid } = await encryptedBdm();
    await new MockActivityEnvironment().run(acts.attachDisk, { instanceUuid, bdmUuid, volumeId });
    expect(asked).toEqual([volumeId]);
    const uuid = encryptionSecretUuid(volumeId);
    const secret = libvirt.secrets.get(uuid)!;
    expect(secret.value).toBe(key.toString('hex'));
    expect(secret.xml).toContain(`<usage type='volume'><volume>/srv/volume-${volumeId}.qcow2</volume></usage>`);
    expect(secret.xml).toContain("private='yes'");
    expect(libvirt.disks[0]).toMatch(new RegExp(`<encryption format='luks'>\\s*<secret type='passphrase' uuid='${uuid}'/>`));
    expect(libvirt.disks[0]).not.toContain(key.toString('hex'));

    await new MockActivityEnvironment().run(acts.detachDisk, { instanceUuid, volumeId });
    expect(libvirt.secrets.has(uuid)).toBe(false);
  });

  it('fails non-retryably, attaching nothing, when no key can be had', async () => {
    const libvirt = new FakeLibvirt();
    const { instanceUuid, volumeId, bdmUuid } = await encryptedBdm();
    const err = await new MockActivityEnvironment().run(activities(libvirt).attachDisk, { instanceUuid, bdmUuid, volumeId }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'VolumeEncryptionUnavailable', nonRetryable: true, message: expect.stringMatching(/without access to the block storage's keys/) });
    const cinderLike = createHostActivities({
      db,
      libvirt: libvirt as unknown as LibvirtConnection,
      host: 'h',
      faults: new FaultInjector(),
      volumeEncryption: {
        getVolumeEncryption: async () => encryption,
        getEncryptionKey: async () => {
          throw new VolumeEncryptionError('attaching it is not supported: no key manager (Barbican) configured in tether.');
        },
      },
    });
    const refused = await new MockActivityEnvironment().run(cinderLike.attachDisk, { instanceUuid, bdmUuid, volumeId }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ type: 'VolumeEncryptionUnavailable', nonRetryable: true, message: expect.stringMatching(/not supported: no key manager \(Barbican\) configured/) });
    expect(libvirt.disks).toEqual([]);
    expect(libvirt.secrets.size).toBe(0);
  });
});

describe('reserveDeviceName', () => {
  it('is idempotent by BDM uuid, refuses a second mapping of the volume and a device in use', async () => {
    const acts = activities(new FakeLibvirt());
    const instanceUuid = await instance();
    const base = { operationId: 'op', instanceUuid, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null };
    const env = new MockActivityEnvironment();
    const volumeId = randomUUID();
    const bdmUuid = randomUUID();
    const first = await env.run(acts.reserveDeviceName, { ...base, bdmUuid, volumeId, device: null });
    const again = await env.run(acts.reserveDeviceName, { ...base, bdmUuid, volumeId, device: null });
    expect(first).toEqual({ bdmUuid, deviceName: '/dev/sdb', diskBus: 'scsi' });
    expect(again).toEqual(first);
    const { rows } = await db.query('SELECT count(*)::int AS n FROM block_device_mappings WHERE instance_uuid = $1', [instanceUuid]);
    expect(rows[0].n).toBe(1);

    await expect(env.run(acts.reserveDeviceName, { ...base, bdmUuid: randomUUID(), volumeId, device: null })).rejects.toMatchObject({
      type: 'VolumeAlreadyAttached',
      nonRetryable: true,
    });
    await expect(env.run(acts.reserveDeviceName, { ...base, bdmUuid: randomUUID(), volumeId: randomUUID(), device: '/dev/sdb' })).rejects.toMatchObject({
      type: 'DevicePathInUse',
    });
    const virtio = await env.run(acts.reserveDeviceName, { ...base, bdmUuid: randomUUID(), volumeId: randomUUID(), device: '/dev/vdc' });
    expect(virtio).toMatchObject({ deviceName: '/dev/vdc', diskBus: 'virtio' });
  });

  it('reads the host connector too when asked (withConnector), with the getHostConnector fault point after the reservation', async () => {
    const faults = new FaultInjector();
    const acts = createHostActivities({ db, libvirt: new FakeLibvirt() as unknown as LibvirtConnection, host: 'h', faults });
    const instanceUuid = await instance();
    const base = { operationId: 'op', instanceUuid, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null, device: null };
    const env = new MockActivityEnvironment();
    const bdmUuid = randomUUID();
    const volumeId = randomUUID();

    faults.inject('getHostConnector', 'before', { times: 1 });
    await expect(env.run(acts.reserveDeviceName, { ...base, bdmUuid, volumeId, withConnector: true })).rejects.toThrow(/Injected fault before step getHostConnector/);
    // the reservation was made before the fault: the retry finds its own BDM and goes on
    const reserved: ReservedDevice = await env.run(acts.reserveDeviceName, { ...base, bdmUuid, volumeId, withConnector: true });
    expect(reserved).toMatchObject({ bdmUuid, deviceName: '/dev/sdb', diskBus: 'scsi' });
    expect(reserved.connector).toEqual(await env.run(acts.getHostConnector));
    expect(reserved.connector).toMatchObject({ host: 'h' });

    const without = await env.run(acts.reserveDeviceName, { ...base, bdmUuid, volumeId });
    expect(without).not.toHaveProperty('connector');
  });
});
