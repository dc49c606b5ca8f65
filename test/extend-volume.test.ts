/**
 * Online extend on the real stack (Temporal dev server, PostgreSQL, libvirtd + QEMU under TCG) with
 * tether's embedded volume service: the ExtendVolume saga grows the disk under the running domain
 * (virDomainBlockResize) and the size is asserted where libvirt reports it (virDomainGetBlockInfo)
 * and in the image itself; qcow2, LUKS qcow2, raw (multiattach, two servers), raw LUKS; a stopped
 * server's volume grown offline; an available volume at once; every refusal and every fault point
 * rolled back (or, past the point of no return, carried forward).
 */
import { execFile } from 'node:child_process';
import { rm, truncate } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { passphraseOf } from '../src/blockstorage/volume-key-store.ts';
import { inspectInvariants, formatDisagreements } from '../src/checker/invariants.ts';
import type { Instance, Volume } from '../src/domain/types.ts';

const run = promisify(execFile);
const GiB = 1024 ** 3;
vi.setConfig({ testTimeout: 180_000 });

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack();
  vm = await runningServer(stack, 'vm-extend');
});

afterAll(async () => {
  await stack?.stop();
});

async function attach(server: string, volumeId: string): Promise<void> {
  const { handle } = await stack.service.attachVolume({ server, volume: volumeId });
  await stack.service.awaitAttach(handle);
}

/** The capacity libvirt reports for the volume's disk in the running domain (virDomainGetBlockInfo). */
async function capacity(instanceUuid: string, volumeId: string): Promise<number> {
  const disk = diskBySerial(await stack.libvirt.getXml(instanceUuid), volumeId);
  if (!disk?.target) throw new Error(`volume ${volumeId} has no live disk in ${instanceUuid}`);
  return (await stack.libvirt.blockInfo(instanceUuid, disk.target)).capacity;
}

async function filePath(volumeId: string): Promise<{ path: string; format: string }> {
  const { rows } = await stack.db.query<{ file_path: string; file_format: string }>('SELECT file_path, file_format FROM volumes WHERE id = $1', [volumeId]);
  return { path: rows[0]!.file_path, format: rows[0]!.file_format };
}

/** The image's virtual size as qemu-img reads it (-U: a running QEMU holds it). */
async function virtualSize(volumeId: string): Promise<number> {
  const { path } = await filePath(volumeId);
  const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', path]);
  return (JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'];
}

async function extendInUse(volumeId: string, newSize: number) {
  const { volume: v, started } = await stack.service.extendVolume({ volume: volumeId, newSize, inUse: true });
  expect(started, 'an in-use volume extends through the saga').not.toBeNull();
  return { accepted: v, result: await stack.service.awaitExtend(started!.handle), handle: started!.handle };
}

/** An os-extend to the end: the refusal (before the API's answer) or the saga's failure (after it), else null. */
async function extendOutcome(volumeId: string, newSize: number): Promise<unknown> {
  try {
    const { started } = await stack.service.extendVolume({ volume: volumeId, newSize, inUse: true });
    await stack.service.awaitExtend(started!.handle);
    return null;
  } catch (err) {
    return err;
  }
}

async function expectCheckerClean(): Promise<void> {
  const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: stack.host });
  expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
}

describe('extend of an in-use volume', () => {
  it('qcow2: the running domain sees the new size; volume, BDM and image agree', async () => {
    const v = await volume(stack, 'ext-qcow2');
    await attach(vm.uuid, v.id);
    expect(await capacity(vm.uuid, v.id)).toBe(1 * GiB);

    const { accepted, result } = await extendInUse(v.id, 2);
    expect(accepted).toMatchObject({ status: 'extending', size: 1 });
    expect(result).toEqual({ instanceUuid: vm.uuid, volumeId: v.id, size: 2, live: true, capacity: 2 * GiB });
    expect(await capacity(vm.uuid, v.id)).toBe(2 * GiB);
    expect(await virtualSize(v.id)).toBe(2 * GiB);
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', size: 2 });
    expect(await liveBdm(stack.db, vm.uuid, v.id)).toMatchObject({ volumeSize: 2, attachStatus: 'attached' });
    await expectCheckerClean();
  });

  it('LUKS qcow2: grown by QEMU with the key it holds; the guest-visible capacity is the new size (the header lives in qcow2 clusters)', async () => {
    const v = await stack.service.createVolume({ name: 'ext-luks', size: 1, volumeType: 'luks' });
    await attach(vm.uuid, v.id);
    const { result } = await extendInUse(v.id, 3);
    expect(result).toMatchObject({ size: 3, live: true, capacity: 3 * GiB });
    expect(await capacity(vm.uuid, v.id)).toBe(3 * GiB);
    expect(await virtualSize(v.id)).toBe(3 * GiB);
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', size: 3, encrypted: true });
  });

  it('raw LUKS (a LUKS device as Cinder keeps it): QEMU is given the size minus the LUKS payload offset, so the device is exactly the new size', async () => {
    // An embedded luks volume whose qcow2 is replaced by a raw LUKS file with the same passphrase.
    const v = await stack.service.createVolume({ name: 'ext-raw-luks', size: 1, volumeType: 'luks' });
    const { path } = await filePath(v.id);
    const encryption = await stack.blockStorage.getVolumeEncryption(v.id);
    const key = await stack.blockStorage.getEncryptionKey(v.id, encryption!);
    const rawPath = path.replace(/\.qcow2$/, '.raw');
    await run('qemu-img', ['create', '-q', '-f', 'luks', '--object', `secret,id=sec0,data=${passphraseOf(key).toString()},format=raw`, '-o', 'key-secret=sec0,iter-time=10', rawPath, '1G']);
    await rm(path);
    await stack.db.query(`UPDATE volumes SET file_path = $2, file_format = 'raw' WHERE id = $1`, [v.id, rawPath]);
    const { stdout } = await run('qemu-img', ['info', '--output=json', rawPath]);
    const offset = (JSON.parse(stdout) as { 'format-specific': { data: { 'payload-offset': number } } })['format-specific'].data['payload-offset'];
    expect(offset).toBeGreaterThan(0);

    await attach(vm.uuid, v.id);
    expect(await capacity(vm.uuid, v.id)).toBe(1 * GiB);
    const { result } = await extendInUse(v.id, 2);
    expect(result).toMatchObject({ size: 2, live: true, capacity: 2 * GiB - offset });
    expect(await capacity(vm.uuid, v.id)).toBe(2 * GiB - offset);
    expect((await run('stat', ['-c', '%s', rawPath])).stdout.trim()).toBe(String(2 * GiB));
  });

  it('multiattach (raw, two servers): the file grows once, each running domain resizes its disk', async () => {
    const other = await runningServer(stack, 'vm-extend-2');
    const v = await volume(stack, 'ext-multi', { multiattach: true });
    await attach(vm.uuid, v.id);
    await attach(other.uuid, v.id);
    const { result } = await extendInUse(v.id, 2);
    expect(result.size).toBe(2);
    // the other server is told (volume-extended), its own ExtendVolume run resizes there
    await expect.poll(() => capacity(other.uuid, v.id), { timeout: 60_000, interval: 200 }).toBe(2 * GiB);
    expect(await capacity(vm.uuid, v.id)).toBe(2 * GiB);
    await expect.poll(async () => (await liveBdm(stack.db, other.uuid, v.id))?.volumeSize, { timeout: 30_000, interval: 200 }).toBe(2);
  });

  it('a shelved (stopped) server: the file is grown offline (qemu-img resize); the domain sees it once it runs again', async () => {
    const target = await runningServer(stack, 'vm-extend-shelved');
    const v = await stack.service.createVolume({ name: 'ext-shelved', size: 1, volumeType: 'luks' });
    await attach(target.uuid, v.id);
    await stack.service.shelveServer(target.uuid);
    const { result } = await extendInUse(v.id, 2);
    expect(result).toMatchObject({ size: 2, live: false, capacity: null });
    expect(await virtualSize(v.id)).toBe(2 * GiB);
    await stack.service.unshelveServer(target.uuid);
    expect(await capacity(target.uuid, v.id)).toBe(2 * GiB);
  });
});

describe('extend of an available volume', () => {
  it('grows at once, qcow2 and LUKS (with the key from the key store), at any volume API version', async () => {
    for (const volumeType of [null, 'luks']) {
      const v = await stack.service.createVolume({ name: `ext-avail-${volumeType ?? 'plain'}`, size: 1, volumeType });
      const { volume: grown, started } = await stack.service.extendVolume({ volume: v.id, newSize: 4, inUse: false });
      expect(started).toBeNull();
      expect(grown).toMatchObject({ status: 'available', size: 4 });
      expect(await virtualSize(v.id)).toBe(4 * GiB);
    }
  });

  it('refuses what Cinder refuses, in its words, and changes nothing', async () => {
    const v = await volume(stack, 'ext-refused');
    await expect(stack.service.extendVolume({ volume: v.id, newSize: 1, inUse: false })).rejects.toMatchObject({
      status: 400,
      message: 'Invalid input received: New size for extend must be greater than current size. (current: 1, extended: 1).',
    });
    await attach(vm.uuid, v.id);
    // in-use below volume API 3.42: Cinder's wording of the state it expected
    await expect(stack.service.extendVolume({ volume: v.id, newSize: 2, inUse: false })).rejects.toMatchObject({
      status: 400,
      message: `Invalid volume: Volume ${v.id} status must be '{'status': 'available'}' to extend, currently in-use.`,
    });
    await expect(stack.service.extendVolume({ volume: v.id, newSize: 1, inUse: true })).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/must be greater than current size/) });
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', size: 1 });
    expect(await virtualSize(v.id)).toBe(1 * GiB);
    // a detach while the volume is extending: Cinder's begin_detaching refusal, before anything starts
    await stack.blockStorage.beginExtending(v.id, 2);
    await expect(stack.service.detachVolume({ server: vm.uuid, volume: v.id })).rejects.toMatchObject({
      status: 400,
      message: "Invalid volume: Unable to detach volume. Volume status must be 'in-use' and attach_status must be 'attached' to detach.",
    });
    await stack.blockStorage.rollExtending(v.id);
  });
});

describe('a failing step', () => {
  const rolledBackAt: Array<[string, 'before' | 'after']> = [
    ['validateExtend', 'before'],
    ['beginExtending', 'before'],
    ['beginExtending', 'after'],
    ['growVolume', 'before'],
    ['resizeDisk', 'before'],
  ];

  it.each(rolledBackAt)('at %s (%s) rolls the volume back: in-use, its old size, the disk unchanged', async (step, phase) => {
    const v = await volume(stack, `ext-fault-${step}-${phase}`);
    await attach(vm.uuid, v.id);
    stack.faults.inject(step, phase);
    try {
      expect(await extendOutcome(v.id, 2)).toMatchObject({ message: expect.stringContaining(`Injected fault ${phase} step ${step}`) });
    } finally {
      stack.faults.clear();
    }
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', size: 1 });
    expect(await capacity(vm.uuid, v.id)).toBe(1 * GiB);
    expect(await virtualSize(v.id)).toBe(1 * GiB);
    expect((await liveBdm(stack.db, vm.uuid, v.id))?.volumeSize).toBeNull();
    // and a new extend goes through
    const { result } = await extendInUse(v.id, 2);
    expect(result.capacity).toBe(2 * GiB);
  });

  it('after the disk grew, a step that fails once is retried and the extend completes (never shrunk back)', async () => {
    for (const [step, phase] of [['resizeDisk', 'after'], ['finishExtending', 'before'], ['recordVolumeSize', 'before']] as const) {
      const v = await volume(stack, `ext-forward-${step}`);
      await attach(vm.uuid, v.id);
      stack.faults.inject(step, phase, { times: 1, nonRetryable: false });
      try {
        const { result } = await extendInUse(v.id, 2);
        expect(result, step).toMatchObject({ size: 2, capacity: 2 * GiB });
      } finally {
        stack.faults.clear();
      }
      expect(await stack.blockStorage.getVolume(v.id), step).toMatchObject({ status: 'in-use', size: 2 });
    }
  });

  it('an extend refused by a failing step leaves the volume as it was: the file truncated larger (raw) is not shrunk, the size recorded is the old one', async () => {
    const v = await volume(stack, 'ext-raw-fault', { multiattach: true });
    await attach(vm.uuid, v.id);
    stack.faults.inject('resizeDisk', 'before');
    try {
      expect(await extendOutcome(v.id, 2)).toMatchObject({ message: expect.stringContaining('Injected fault before step resizeDisk') });
    } finally {
      stack.faults.clear();
    }
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', size: 1 });
    expect(await capacity(vm.uuid, v.id)).toBe(1 * GiB);
    // growVolume truncated the raw file larger before the host step failed: larger than recorded, never smaller
    const { path } = await filePath(v.id);
    expect(Number((await run('stat', ['-c', '%s', path])).stdout.trim())).toBe(2 * GiB);
    await truncate(path, 1 * GiB);
  });
});
