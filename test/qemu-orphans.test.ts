/**
 * Disks QEMU holds that libvirt lost track of (libvirtd killed between QEMU's device_add and recording
 * it — found by the chaos runner's libvirtd kills): the next hot-plug at that address failed with
 * "Duplicate device ID" and the guest kept seeing a volume tether had rolled back. The orphan is made
 * here as libvirtd's death leaves it, through QEMU's monitor, behind libvirt's back.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { libvirtMissing } from './support/probes.ts';
import { needs } from './support/skips.ts';
import { findOrphanDisks } from '../src/host/qemu-orphan-disks.ts';
import { checkInvariants } from '../src/checker/invariants.ts';
import type { Instance } from '../src/domain/types.ts';

const missing = await libvirtMissing();
const available = missing === null;
let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  if (!available) return;
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-orphans');
});
afterAll(async () => {
  await stack?.stop();
});

/** Plugs a qcow2 file into the running guest as SCSI target 0 unit `lun`, the way libvirt would, without libvirt. */
async function plugOrphan(id: string, lun: number): Promise<string> {
  const file = path.join(stack.volumeDir, `orphan-${id}.qcow2`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
  // QEMU runs as its own user here; libvirt would have handed it the file (as it does for volumes)
  execFileSync('chown', ['libvirt-qemu:libvirt-qemu', file]);
  const qmp = (execute: string, args: Record<string, unknown>) => stack.libvirt.qemuMonitorCommand(vm.uuid, { execute, arguments: args });
  await qmp('blockdev-add', { driver: 'file', filename: file, 'node-name': `o-${lun}-storage` });
  await qmp('blockdev-add', { driver: 'qcow2', file: `o-${lun}-storage`, 'node-name': `o-${lun}-format` });
  await qmp('device_add', { driver: 'scsi-hd', bus: 'scsi0.0', channel: 0, 'scsi-id': 0, lun, drive: `o-${lun}-format`, id });
  return file;
}

describe('disks QEMU holds that libvirt lost track of', needs('libvirt', missing), () => {
  it('are found, and an attach at their address removes them first instead of failing on a duplicate device', async () => {
    // libvirt names the disk at SCSI unit 1 — /dev/sdb, the next attach's device — scsi0-0-0-1
    const file = await plugOrphan('scsi0-0-0-1', 1);
    expect(await findOrphanDisks(stack.libvirt, vm.uuid)).toEqual([{ id: 'scsi0-0-0-1', nodeName: 'o-1-format', file }]);
    expect(await stack.libvirt.getXml(vm.uuid)).not.toContain(file);
    // the invariant checker reports it
    const found = await checkInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, host: stack.host });
    expect(found).toEqual([expect.objectContaining({ kind: 'qemu-orphan-disk', instanceUuid: vm.uuid })]);

    const v = await volume(stack, 'vol-after-orphan');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    const result = await stack.service.awaitAttach(started.handle);
    expect(result).toMatchObject({ device: '/dev/sdb', hostAttached: true });
    expect(await findOrphanDisks(stack.libvirt, vm.uuid)).toEqual([]);
    const blocks = JSON.stringify(await stack.libvirt.qemuMonitorCommand(vm.uuid, { execute: 'query-block' }));
    expect(blocks).not.toContain(file);
    expect(blocks).toContain(v.id); // the new disk is there, known to libvirt

    const { handle } = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitDetach(handle);
    expect(await checkInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, host: stack.host })).toEqual([]);
  });

  it('a detach also leaves none behind', async () => {
    const v = await volume(stack, 'vol-detach-orphan');
    const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitAttach(started.handle);
    const file = await plugOrphan('lost-disk', 5);
    expect((await findOrphanDisks(stack.libvirt, vm.uuid)).map((o) => o.id)).toEqual(['lost-disk']);

    const { handle } = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitDetach(handle);
    expect(await findOrphanDisks(stack.libvirt, vm.uuid)).toEqual([]);
    expect(JSON.stringify(await stack.libvirt.qemuMonitorCommand(vm.uuid, { execute: 'query-block' }))).not.toContain(file);
  });
});
