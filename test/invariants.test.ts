/**
 * The invariant checker against the real stack (Temporal dev server, PostgreSQL, libvirt + QEMU):
 * a clean stack has no disagreement; each invariant broken behind tether's back is reported as
 * exactly its kind, naming the instance and the volume; repairing it makes the report clean again.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { formatDisagreements, inspectInvariants, checkInvariants, type Disagreement, type LibvirtReader } from '../src/checker/invariants.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { buildDiskXml } from '../src/libvirt/disk-xml.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import type { Instance, Volume } from '../src/domain/types.ts';

const run = promisify(execFile);

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack({ detachUnplugWaitMs: 1_500 });
  vm = await runningServer(stack, 'vm-invariants');
});

afterAll(async () => {
  await stack?.stop();
});

function inspect(options: { allHosts?: boolean } = {}) {
  return inspectInvariants({
    db: stack.db,
    blockStorage: stack.blockStorage,
    libvirt: stack.libvirt,
    client: stack.client,
    controlTaskQueue: stack.controlTaskQueue,
    ...(options.allHosts ? {} : { host: stack.host }),
  });
}

async function expectClean(options: { allHosts?: boolean } = {}) {
  const report = await inspect(options);
  expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
  expect(report.inFlight, formatDisagreements(report.inFlight)).toEqual([]);
  return report;
}

/** Exactly these findings, in this order (the checker sorts by kind, then instance, then volume). */
async function expectExactly(expected: Array<Partial<Disagreement>>, options: { allHosts?: boolean } = {}) {
  const report = await inspect(options);
  expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual(expected.map((e) => expect.objectContaining(e)));
  expect(report.inFlight, formatDisagreements(report.inFlight)).toEqual([]);
  return report.disagreements;
}

async function attach(server: Instance, v: Volume, device?: string) {
  const started = await stack.service.attachVolume({ server: server.uuid, volume: v.id, device: device ?? null });
  return stack.service.awaitAttach(started.handle);
}

async function detach(server: Instance, v: Volume) {
  const { handle } = await stack.service.detachVolume({ server: server.uuid, volume: v.id });
  await stack.service.awaitDetach(handle);
}

async function rolledBackAttach(server: Instance, name: string, step: string, phase: 'before' | 'after') {
  const v = await volume(stack, name);
  stack.faults.inject(step, phase, { times: 1 });
  try {
    // a failure before the reservation point fails the request itself, after it the workflow
    const failure = await stack.service.attachVolume({ server: server.uuid, volume: v.id })
      .then((started) => stack.service.awaitAttach(started.handle))
      .then(() => null, (err: unknown) => err as Error);
    expect(failure?.message).toMatch(new RegExp(`Injected fault ${phase} step ${step}`));
  } finally {
    stack.faults.clear();
  }
  return v;
}

async function untilGoneFromLiveXml(instanceUuid: string, serial: string) {
  const deadline = Date.now() + 15_000;
  while (diskBySerial(await stack.libvirt.getXml(instanceUuid), serial)) {
    if (Date.now() > deadline) throw new Error(`disk ${serial} did not leave the live XML of ${instanceUuid}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function sql(text: string, params: unknown[] = []) {
  return stack.db.query(text, params);
}

describe('a stack tether alone has worked on', () => {
  it('has no disagreement after successful attaches, rolled-back attaches and a detach', async () => {
    const a = await volume(stack, 'clean-a');
    const b = await volume(stack, 'clean-b');
    const c = await volume(stack, 'clean-c');
    await attach(vm, a);
    await attach(vm, b, '/dev/sdk');
    await attach(vm, c);
    await detach(vm, c);
    for (const [step, phase] of [['reserveVolume', 'after'], ['initializeConnection', 'after'], ['attachDisk', 'after'], ['completeAttachment', 'after']] as const) {
      await rolledBackAttach(vm, `clean-rb-${step}`, step, phase);
    }
    const report = await expectClean();
    expect(report.scanned).toMatchObject({ instances: 1, domains: 1, bdms: 2 });
    expect(formatDisagreements(report.disagreements)).toBe('no disagreements');
    // without the host filter too
    await expectClean({ allHosts: true });
  });

  it('reports an attach in flight as in flight, not as a disagreement, and nothing once it finished', async () => {
    const v = await volume(stack, 'in-flight');
    // attachDisk fails (retryably) 3 times: the attach sits with BDM, attachment and volume 'attaching' for ~3.5 s
    stack.faults.inject('attachDisk', 'before', { times: 3, nonRetryable: false });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      const deadline = Date.now() + 10_000;
      while ((await stack.blockStorage.getVolume(v.id)).status !== 'attaching') {
        if (Date.now() > deadline) throw new Error('the volume never became attaching');
        await new Promise((r) => setTimeout(r, 50));
      }
      const report = await inspect();
      expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
      const attachId = `attach-${vm.uuid}-${v.id}`;
      expect(report.inFlight).toEqual(expect.arrayContaining([
        expect.objectContaining({ kind: 'stuck-volume', volumeId: v.id, inFlightBy: [attachId] }),
        expect.objectContaining({ kind: 'stuck-bdm', instanceUuid: vm.uuid, volumeId: v.id, inFlightBy: [attachId] }),
      ]));
      expect(formatDisagreements(report.inFlight)).toMatch(/in flight: attach-/);
      // with includeInFlight the same findings come back from checkInvariants
      const all = await checkInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, host: stack.host }, { includeInFlight: true });
      expect(all.every((d) => d.inFlightBy !== undefined)).toBe(true);
      await stack.service.awaitAttach(started.handle);
    } finally {
      stack.faults.clear();
    }
    await expectClean();
  });

  it('keeps in flight what was read while a workflow ran even when the workflow has closed by the time Temporal is asked', async () => {
    const v = await volume(stack, 'closes-during-check');
    stack.faults.inject('attachDisk', 'before', { times: 2, nonRetryable: false });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      const deadline = Date.now() + 10_000;
      while ((await stack.blockStorage.getVolume(v.id)).status !== 'attaching') {
        if (Date.now() > deadline) throw new Error('the volume never became attaching');
        await new Promise((r) => setTimeout(r, 50));
      }
      // The database and the block storage are read mid-attach; libvirt answers only once the attach is over.
      let finished: Promise<unknown> | undefined;
      const slowLibvirt: LibvirtReader = {
        lookupDomain: (uuid) => stack.libvirt.lookupDomain(uuid),
        getXml: async (uuid, options) => {
          finished ??= stack.service.awaitAttach(started.handle);
          await finished;
          return stack.libvirt.getXml(uuid, options);
        },
      };
      const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: slowLibvirt, client: stack.client, host: stack.host });
      expect((await started.handle.describe()).status.name).toBe('COMPLETED');
      expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
      const attachId = `attach-${vm.uuid}-${v.id}`;
      expect(report.inFlight).toEqual([
        expect.objectContaining({ kind: 'stuck-volume', volumeId: v.id, inFlightBy: [attachId] }),
        expect.objectContaining({ kind: 'stuck-bdm', instanceUuid: vm.uuid, volumeId: v.id, inFlightBy: [attachId] }),
      ]);
    } finally {
      stack.faults.clear();
    }
    await expectClean();
  });
});

describe('each invariant broken behind tether\'s back is reported as exactly its kind', () => {
  it('bdm-without-disk: the disk detached with libvirt directly, first from the live domain, then from the config too', async () => {
    const v = await volume(stack, 'lost-disk');
    const { device } = await attach(vm, v);
    const config = diskBySerial(await stack.libvirt.getXml(vm.uuid, { inactive: true }), v.id)!;
    const live = diskBySerial(await stack.libvirt.getXml(vm.uuid), v.id)!;

    await stack.libvirt.detachDevice(vm.uuid, live.xml, { live: true, config: false });
    await untilGoneFromLiveXml(vm.uuid, v.id);
    let [found] = await expectExactly([{ kind: 'bdm-without-disk', instanceUuid: vm.uuid, volumeId: v.id, device: device! }]);
    expect(found!.detail).toMatch(/is in the live domain$/);

    await stack.libvirt.detachDevice(vm.uuid, config.xml, { live: false, config: true });
    [found] = await expectExactly([{ kind: 'bdm-without-disk', instanceUuid: vm.uuid, volumeId: v.id, device: device! }]);
    expect(found!.detail).toMatch(/is in the persistent config or the live domain$/);

    // tether's own detach repairs it: the disk is already gone, the attachment and the BDM go
    await detach(vm, v);
    await expectClean();
  });

  it('disk-without-bdm: a disk attached with libvirt directly whose serial is a volume id, or only looks like one', async () => {
    const v = await volume(stack, 'stray-disk');
    const { rows } = await sql('SELECT file_path FROM volumes WHERE id = $1', [v.id]);
    const diskXml = buildDiskXml({
      connectionInfo: { driver_volume_type: 'file', data: { path: rows[0]!.file_path, format: 'qcow2' } },
      targetDev: 'sdy',
      bus: 'scsi',
      serial: v.id,
    });
    await stack.libvirt.attachDevice(vm.uuid, diskXml, { live: true, config: true });
    const [found] = await expectExactly([{ kind: 'disk-without-bdm', instanceUuid: vm.uuid, volumeId: v.id, device: '/dev/sdy' }]);
    expect(found!.detail).toMatch(/sdy in the persistent config and the live domain .* \(volume available\)/);
    await stack.libvirt.detachDevice(vm.uuid, diskXml, { live: true, config: true });
    await untilGoneFromLiveXml(vm.uuid, v.id);
    await expectClean();

    // a tether-like serial that names no volume
    const ghost = randomUUID();
    const file = path.join(stack.volumeDir, `ghost-${ghost}.qcow2`);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
    const ghostXml = buildDiskXml({ connectionInfo: { driver_volume_type: 'file', data: { path: file, format: 'qcow2' } }, targetDev: 'sdx', bus: 'scsi', serial: ghost });
    await stack.libvirt.attachDevice(vm.uuid, ghostXml, { live: true, config: true });
    const [ghostFound] = await expectExactly([{ kind: 'disk-without-bdm', instanceUuid: vm.uuid, volumeId: ghost, device: '/dev/sdx' }]);
    expect(ghostFound!.detail).toMatch(/no live volume has this id/);
    await stack.libvirt.detachDevice(vm.uuid, ghostXml, { live: true, config: true });
    await untilGoneFromLiveXml(vm.uuid, ghost);
    await expectClean();
  });

  it('device-mismatch: a BDM whose device_name was changed with SQL', async () => {
    const v = await volume(stack, 'moved');
    const { device, bdmUuid } = await attach(vm, v);
    await sql(`UPDATE block_device_mappings SET device_name = '/dev/sdz' WHERE uuid = $1`, [bdmUuid]);
    const [found] = await expectExactly([{ kind: 'device-mismatch', instanceUuid: vm.uuid, volumeId: v.id, device: '/dev/sdz' }]);
    expect(found!.detail).toContain(`says /dev/sdz but the disk is ${device!.slice(5)} in the persistent config and the live domain`);
    await sql('UPDATE block_device_mappings SET device_name = $2 WHERE uuid = $1', [bdmUuid, device]);
    await expectClean();
  });

  it('stuck-volume: a volume set to reserved with SQL, with no workflow', async () => {
    const v = await volume(stack, 'stuck');
    await sql(`UPDATE volumes SET status = 'reserved' WHERE id = $1`, [v.id]);
    const [found] = await expectExactly([{ kind: 'stuck-volume', volumeId: v.id }]);
    expect(found!.instanceUuid).toBeUndefined();
    expect(found!.detail).toBe(`volume is 'reserved' and no attach or detach of it is running (no live attachment)`);
    await sql(`UPDATE volumes SET status = 'available' WHERE id = $1`, [v.id]);
    await expectClean();
  });

  it('volume-status-mismatch: an in-use volume set to available with SQL', async () => {
    const v = await volume(stack, 'says-available');
    await attach(vm, v);
    await sql(`UPDATE volumes SET status = 'available' WHERE id = $1`, [v.id]);
    const [found] = await expectExactly([{ kind: 'volume-status-mismatch', volumeId: v.id }]);
    expect(found!.detail).toMatch(/^volume is available but has live attachments \(attachments: \S+ attached to /);
    await sql(`UPDATE volumes SET status = 'in-use' WHERE id = $1`, [v.id]);
    await expectClean();
  });

  it('a BDM soft-deleted with SQL: its disk and its attachment have no BDM any more; undeleted: clean again', async () => {
    const v = await volume(stack, 'bdm-gone');
    const { bdmUuid, device } = await attach(vm, v);
    await sql('UPDATE block_device_mappings SET deleted_at = now() WHERE uuid = $1', [bdmUuid]);
    await expectExactly([
      { kind: 'disk-without-bdm', instanceUuid: vm.uuid, volumeId: v.id, device: device! },
      { kind: 'unknown-attachment', instanceUuid: vm.uuid, volumeId: v.id },
    ]);
    await sql('UPDATE block_device_mappings SET deleted_at = NULL WHERE uuid = $1', [bdmUuid]);
    await expectClean();
  });

  it('stuck-bdm: the soft-deleted BDM of a rolled-back attach brought back to life with SQL', async () => {
    const v = await rolledBackAttach(vm, 'revived', 'attachDisk', 'after');
    const { rows } = await sql('SELECT uuid FROM block_device_mappings WHERE volume_id = $1', [v.id]);
    await sql('UPDATE block_device_mappings SET deleted_at = NULL WHERE uuid = $1', [rows[0]!.uuid]);
    expect(await liveBdm(stack.db, vm.uuid, v.id)).toMatchObject({ attachStatus: 'attaching' });
    await expectExactly([{ kind: 'stuck-bdm', instanceUuid: vm.uuid, volumeId: v.id }]);
    await sql('UPDATE block_device_mappings SET deleted_at = now() WHERE uuid = $1', [rows[0]!.uuid]);
    await expectClean();
  });

  it('duplicate-device: two live BDMs on one device (the unique index dropped in this test\'s own database)', async () => {
    const v = await volume(stack, 'dup');
    const { device } = await attach(vm, v);
    await sql('DROP INDEX bdm_one_live_per_device');
    const extra = randomUUID();
    try {
      await sql(
        `INSERT INTO block_device_mappings (uuid, instance_uuid, source_type, destination_type, device_name, attach_status)
         VALUES ($1, $2, 'blank', 'local', $3, 'attached')`,
        [extra, vm.uuid, device],
      );
      const [found] = await expectExactly([{ kind: 'duplicate-device', instanceUuid: vm.uuid, device: device! }]);
      expect(found!.detail).toContain(extra);
    } finally {
      await sql('DELETE FROM block_device_mappings WHERE uuid = $1', [extra]);
      await sql(`CREATE UNIQUE INDEX bdm_one_live_per_device ON block_device_mappings (instance_uuid, device_name)
                 WHERE deleted_at IS NULL AND device_name IS NOT NULL`);
    }
    await expectClean();
  });

  it('stuck-task: an instance whose task_state was set with SQL, with no workflow holding it', async () => {
    await sql(`UPDATE instances SET task_state = 'shelving' WHERE uuid = $1`, [vm.uuid]);
    try {
      await expectExactly([{ kind: 'stuck-task', instanceUuid: vm.uuid }]);
    } finally {
      await sql('UPDATE instances SET task_state = NULL WHERE uuid = $1', [vm.uuid]);
    }
    await expectClean();
  });
});

describe('with a multiattach volume on two servers', () => {
  let other: Instance;
  let third: Instance;
  let shared: Volume;

  beforeAll(async () => {
    other = await runningServer(stack, 'vm-invariants-other');
    third = await runningServer(stack, 'vm-invariants-third');
    shared = await volume(stack, 'shared', { multiattach: true });
    await attach(vm, shared);
    await attach(other, shared);
  });

  it('is clean', async () => {
    await expectClean();
  });

  it('unknown-attachment: a volume_attachments row inserted with SQL', async () => {
    const id = randomUUID();
    await sql(
      `INSERT INTO volume_attachments (id, volume_id, instance_uuid, multiattach, status, attached_at) VALUES ($1, $2, $3, true, 'attached', now())`,
      [id, shared.id, third.uuid],
    );
    const [found] = await expectExactly([{ kind: 'unknown-attachment', instanceUuid: third.uuid, volumeId: shared.id }]);
    expect(found!.detail).toBe(`attachment ${id} (attached) has no live BDM`);
    await sql('DELETE FROM volume_attachments WHERE id = $1', [id]);
    await expectClean();
  });

  it('an attachment row inserted for an available single-attach volume: also a volume status mismatch', async () => {
    const v = await volume(stack, 'sneaky');
    const id = randomUUID();
    await sql(`INSERT INTO volume_attachments (id, volume_id, instance_uuid, multiattach, status) VALUES ($1, $2, $3, false, 'reserved')`, [id, v.id, third.uuid]);
    await expectExactly([
      { kind: 'unknown-attachment', instanceUuid: third.uuid, volumeId: v.id },
      { kind: 'volume-status-mismatch', volumeId: v.id },
    ]);
    await sql('DELETE FROM volume_attachments WHERE id = $1', [id]);
    await expectClean();
  });

  it('bdm-without-attachment: one server\'s attachment soft-deleted with SQL', async () => {
    const { rows } = await sql('SELECT id FROM volume_attachments WHERE volume_id = $1 AND instance_uuid = $2 AND deleted_at IS NULL', [shared.id, other.uuid]);
    await sql('UPDATE volume_attachments SET deleted_at = now() WHERE id = $1', [rows[0]!.id]);
    await expectExactly([{ kind: 'bdm-without-attachment', instanceUuid: other.uuid, volumeId: shared.id }]);
    await sql('UPDATE volume_attachments SET deleted_at = NULL WHERE id = $1', [rows[0]!.id]);
    await expectClean();
  });

  it('attachment-mismatch: an attached BDM whose attachment went back to attaching', async () => {
    await sql(`UPDATE volume_attachments SET status = 'attaching' WHERE volume_id = $1 AND instance_uuid = $2 AND deleted_at IS NULL`, [shared.id, other.uuid]);
    const [found] = await expectExactly([{ kind: 'attachment-mismatch', instanceUuid: other.uuid, volumeId: shared.id }]);
    expect(found!.detail).toMatch(/the BDM is attached but attachment \S+ is 'attaching'/);
    await sql(`UPDATE volume_attachments SET status = 'attached' WHERE volume_id = $1 AND instance_uuid = $2 AND deleted_at IS NULL`, [shared.id, other.uuid]);
    await expectClean();
  });

  it('orphan-bdm: the instance deleted with SQL under its BDM (reported without a host filter)', async () => {
    await sql('UPDATE instances SET deleted_at = now() WHERE uuid = $1', [other.uuid]);
    try {
      await expectExactly([{ kind: 'orphan-bdm', instanceUuid: other.uuid, volumeId: shared.id }], { allHosts: true });
      await expectClean(); // with the host filter a deleted instance is out of scope
    } finally {
      await sql('UPDATE instances SET deleted_at = NULL WHERE uuid = $1', [other.uuid]);
    }
    await expectClean({ allHosts: true });
  });

  it('missing-domain: the domain destroyed and undefined with libvirt directly; then offloaded as shelve-offload would: clean', async () => {
    const v = await volume(stack, 'third-data');
    await attach(third, v);
    await stack.libvirt.destroyDomain(third.uuid);
    await stack.libvirt.undefineDomain(third.uuid);
    const [found] = await expectExactly([{ kind: 'missing-domain', instanceUuid: third.uuid }]);
    expect(found!.detail).toBe(
      `instance is active on host ${stack.host} but libvirt has no domain ${third.uuid} (its 1 volume BDM(s) were not checked against disks)`,
    );

    // What shelveOffloadServer leaves: no host, no domain, the BDM waiting for unshelve, the volume only reserved.
    await sql(`UPDATE instances SET vm_state = 'shelved_offloaded', host = NULL WHERE uuid = $1`, [third.uuid]);
    await sql(`UPDATE block_device_mappings SET attach_status = 'attaching', connection_info = NULL WHERE instance_uuid = $1 AND deleted_at IS NULL`, [third.uuid]);
    await sql(`UPDATE volume_attachments SET status = 'reserved', connector = NULL, attached_at = NULL WHERE volume_id = $1 AND deleted_at IS NULL`, [v.id]);
    await sql(`UPDATE volumes SET status = 'reserved' WHERE id = $1`, [v.id]);
    await expectClean({ allHosts: true });
    await expectClean(); // an instance with no host is on no host

    // ... but its reserved volume with the attachment gone is not resting any more
    await sql('UPDATE volume_attachments SET deleted_at = now() WHERE volume_id = $1 AND deleted_at IS NULL', [v.id]);
    await expectExactly([
      { kind: 'bdm-without-attachment', instanceUuid: third.uuid, volumeId: v.id },
      { kind: 'stuck-volume', volumeId: v.id },
    ], { allHosts: true });
    await sql(`UPDATE volumes SET status = 'available' WHERE id = $1`, [v.id]);
    await sql('UPDATE block_device_mappings SET deleted_at = now() WHERE instance_uuid = $1', [third.uuid]);
    await expectClean({ allHosts: true });
  });
});
