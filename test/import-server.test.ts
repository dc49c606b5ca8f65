/**
 * `tether server import` on the real stack (libvirtd + QEMU under TCG, PostgreSQL, Temporal, the
 * embedded volume service): a domain started behind tether's back, with a disk of a tether volume
 * (serial = the volume id) and a scratch disk of its own, becomes a server without a restart — an
 * instance with the domain's uuid, a BDM and an attachment for the volume, the scratch disk left
 * alone and reported; it then takes an attach and a detach with its QEMU process unchanged, and the
 * checker finds every store in agreement. A failure during the import leaves nothing recorded.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { volume } from './support/fixtures.ts';
import { foreignDomain as startForeignDomain, qemuPid } from './support/foreign-domain.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import { getInstance } from '../src/db/instances.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { inspectInvariants, formatDisagreements } from '../src/checker/invariants.ts';

vi.setConfig({ testTimeout: 180_000 });

let stack: TestStack;
const scratchFiles: string[] = [];

beforeAll(async () => {
  stack = await startTestStack();
});

const foreignDomain = (name: string, volumeId: string) => startForeignDomain(stack, name, volumeId, scratchFiles);

afterAll(async () => {
  await stack?.stop();
  for (const f of scratchFiles) await rm(f, { force: true });
});

async function expectCheckerClean(): Promise<void> {
  const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: stack.host });
  expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
}

describe('tether server import', () => {
  it('a running domain becomes a server without a restart, then takes an attach and a detach with the same QEMU process; tether check is clean', async () => {
    const v = await volume(stack, 'imported-data');
    const name = `foreign-${stack.id}`;
    const { uuid, scratch } = await foreignDomain(name, v.id);
    const pid = await qemuPid(name);

    const result = await stack.service.importServer({ domain: name });
    expect(result).toMatchObject({ instanceUuid: uuid, name, host: stack.host, vmState: 'active', alreadyImported: false });
    expect(result.adopted).toEqual([{ volumeId: v.id, device: '/dev/sdb', attachmentId: expect.any(String) }]);
    expect(result.leftAlone).toEqual([{ target: 'sdc', source: scratch, serial: 'scratch-disk', reason: 'its serial names no volume (not a volume of the block storage)' }]);
    expect(await getInstance(stack.db, uuid)).toMatchObject({ uuid, host: stack.host, vmState: 'active', taskState: null, libvirtDomain: name });
    expect(await liveBdm(stack.db, uuid, v.id)).toMatchObject({ deviceName: '/dev/sdb', attachStatus: 'attached', attachmentId: result.adopted[0]!.attachmentId });
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', attachments: [{ serverId: uuid, status: 'attached' }] });
    await expectCheckerClean();

    // an import asked again finds it done
    expect(await stack.service.importServer({ domain: uuid })).toMatchObject({ instanceUuid: uuid, alreadyImported: true, adopted: [] });

    // the server takes an attach and a detach, and the imported volume detaches too
    const added = await volume(stack, 'imported-added');
    const attached = await stack.service.awaitAttach((await stack.service.attachVolume({ server: uuid, volume: added.id })).handle);
    // a name free in the domain: not the adopted volume's, not the scratch disk's (which, as the domain's own first disk, is its root)
    expect(attached.device).toMatch(/^\/dev\/sd[a-z]$/);
    expect(['/dev/sdb', '/dev/sdc']).not.toContain(attached.device);
    expect(diskElements(await stack.libvirt.getXml(uuid)).map((d) => d.serial).sort()).toEqual(['' + v.id, 'scratch-disk', added.id].sort());
    await expectCheckerClean();
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: uuid, volume: added.id })).handle);
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: uuid, volume: v.id })).handle);
    expect(diskElements(await stack.libvirt.getXml(uuid)).map((d) => d.serial)).toEqual(['scratch-disk']);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');

    expect(await qemuPid(name)).toBe(pid);
    expect((await stack.libvirt.lookupDomain(uuid))?.active).toBe(true);
    await expectCheckerClean();
  });

  it('a failure while adopting a volume rolls the import back: no instance, no BDM, the volume available, the domain untouched', async () => {
    const v = await volume(stack, 'import-fails');
    const name = `foreign-fail-${stack.id}`;
    const { uuid } = await foreignDomain(name, v.id);
    const pid = await qemuPid(name);
    stack.faults.inject('adoptVolume', 'after', { times: 1 });
    try {
      await expect(stack.service.importServer({ domain: name })).rejects.toThrow(/Importing domain .* failed at step adoptVolume: Injected fault/);
    } finally {
      stack.faults.clear();
    }
    expect(await getInstance(stack.db, uuid)).toBeNull();
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'available', attachments: [] });
    expect(diskElements(await stack.libvirt.getXml(uuid)).map((d) => d.serial)).toEqual([v.id, 'scratch-disk']);
    expect(await qemuPid(name)).toBe(pid);
    // tether does not know it: destroy it here
    await stack.libvirt.destroyDomain(uuid);
    await stack.libvirt.undefineDomain(uuid);
  });

  it('no such domain: InstanceNotFound, nothing recorded', async () => {
    await expect(stack.service.importServer({ domain: `missing-${stack.id}` })).rejects.toMatchObject({ type: 'InstanceNotFound' });
  });
});
