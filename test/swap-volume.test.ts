/**
 * Swap on the real stack (Temporal dev server, PostgreSQL, libvirtd + QEMU under TCG, a real Linux
 * guest: test/support/guest.ts) with tether's embedded volume service, whose migration works as
 * Cinder's does: the volume begins migrating to a destination, the server's swap copies the disk
 * under the running guest (virDomainBlockCopy), pivots, and ends the migration; the volume keeps its
 * id. What the guest wrote before is what it reads after. The admin's (or Cinder's) PUT
 * os-volume_attachments during the migration takes the same path; Nova's 409 and tether's 400s
 * refuse before anything changes; a failure at each step before the pivot leaves the old volume
 * attached and the new one available; a pivot whose answer was lost goes forward.
 *
 * RECORD_HISTORIES=1 also writes the swap's histories (test/histories/swap-*.json) for test/replay.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { startTestApi, type RunningApi } from './support/clouds.ts';
import { volume } from './support/fixtures.ts';
import { Guest, guestDomainTemplate, patternChecksum } from './support/guest.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { diskFacts } from '../activities/host/disk-resize.ts';
import { inspectInvariants, formatDisagreements } from '../src/checker/invariants.ts';
import { swapWorkflowId, type SwapResult } from '../src/domain/contracts/swap-volume.ts';
import { loadConfig } from '../src/config.ts';
import type { Volume } from '../src/domain/types.ts';

vi.setConfig({ testTimeout: 240_000 });

const historyDir = fileURLToPath(new URL('./histories/', import.meta.url));

let stack: TestStack;
let api: RunningApi;
let guest: Guest;

beforeAll(async () => {
  // Fails here, saying how to build it, when the guest is not built: never skipped.
  const template = await guestDomainTemplate();
  stack = await startTestStack({ domainTemplate: template });
  api = await startTestApi(stack);
  guest = await Guest.boot(stack, 'swap-guest');
}, 300_000);

afterAll(async () => {
  guest?.close();
  await api?.close();
  await stack?.stop();
});

async function http(method: string, url: string, body?: unknown, version = '2.85') {
  const res = await fetch(`${api.url}${url}`, {
    method,
    headers: { 'OpenStack-API-Version': `compute ${version}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

async function attached(name: string): Promise<Volume> {
  const v = await volume(stack, name);
  await stack.service.awaitAttach((await stack.service.attachVolume({ server: guest.instance.uuid, volume: v.id })).handle);
  await guest.waitForDisk(v.id);
  return v;
}

async function fileOf(volumeId: string): Promise<string> {
  const { rows } = await stack.db.query<{ file_path: string }>('SELECT file_path FROM volumes WHERE id = $1', [volumeId]);
  return rows[0]!.file_path;
}

/** The source file of the volume's disk (by its serial) in the live and in the persistent definition. */
async function diskSources(volumeId: string): Promise<{ live: string | null; config: string | null }> {
  const live = diskBySerial(await stack.libvirt.getXml(guest.instance.uuid), volumeId);
  const config = diskBySerial(await stack.libvirt.getXml(guest.instance.uuid, { inactive: true }), volumeId);
  return { live: live ? diskFacts(live.xml).source : null, config: config ? diskFacts(config.xml).source : null };
}

async function expectCheckerClean(): Promise<void> {
  const report = await inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: stack.host });
  expect(report.disagreements, formatDisagreements(report.disagreements)).toEqual([]);
}

/** `tether volume migrate`'s path: the volume begins migrating, the swap runs; its result or failure. */
async function migrate(volumeId: string): Promise<{ destination: Volume; result: SwapResult | null; failure: Error | null; workflowId: string }> {
  const started = await stack.service.migrateVolume({ volume: volumeId });
  try {
    return { destination: started.destination, result: await stack.service.awaitSwap(started.handle), failure: null, workflowId: started.workflowId };
  } catch (err) {
    return { destination: started.destination, result: null, failure: err as Error, workflowId: started.workflowId };
  }
}

function saveHistory(name: string, workflowId: string): void {
  if (process.env.RECORD_HISTORIES !== '1') return;
  const json = execFileSync(loadConfig().temporalBinary, ['workflow', 'show', '--address', stack.temporalAddress, '--workflow-id', workflowId, '--output', 'json']);
  writeFileSync(path.join(historyDir, `${name}.json`), json);
}

describe('swap through a migration of the embedded volume service', () => {
  it("the guest reads after the swap what it wrote before; the disk reads the copy, live and persistent; the volume keeps its id; detach afterwards works", async () => {
    const v = await attached('swap-data');
    const written = await guest.write(v.id, 'before-the-swap');
    expect(written).toBe(patternChecksum('before-the-swap'));
    const oldFile = await fileOf(v.id);
    const bdmBefore = (await liveBdm(stack.db, guest.instance.uuid, v.id))!;

    const started = await stack.service.migrateVolume({ volume: v.id });
    const copyFile = await fileOf(started.destination.id);
    const result = await stack.service.awaitSwap(started.handle);
    saveHistory('swap-succeeded', started.workflowId);

    expect(result).toMatchObject({ instanceUuid: guest.instance.uuid, oldVolumeId: v.id, newVolumeId: started.destination.id, volumeId: v.id });
    // the guest: same disk, same data
    expect(await guest.read(v.id)).toBe(written);
    expect(await diskSources(v.id)).toEqual({ live: copyFile, config: copyFile });
    // the stores: the volume keeps its id and now holds the copy; the destination record and the old file are gone
    expect(await fileOf(v.id)).toBe(copyFile);
    expect(existsSync(oldFile)).toBe(false);
    await expect(stack.blockStorage.getVolume(started.destination.id)).rejects.toMatchObject({ type: 'VolumeNotFound' });
    const after = await stack.blockStorage.getVolume(v.id);
    expect(after).toMatchObject({ status: 'in-use', migrationStatus: 'success', attachments: [{ attachmentId: result.attachmentId, status: 'attached', serverId: guest.instance.uuid }] });
    const bdm = (await liveBdm(stack.db, guest.instance.uuid, v.id))!;
    expect(bdm).toMatchObject({ uuid: bdmBefore.uuid, deviceName: bdmBefore.deviceName, attachmentId: result.attachmentId, attachStatus: 'attached' });
    expect(result.attachmentId).not.toBe(bdmBefore.attachmentId);
    await expectCheckerClean();

    // the guest writes on to the copy, and a detach finds the disk by its serial
    expect(await guest.write(v.id, 'after-the-swap')).toBe(patternChecksum('after-the-swap'));
    expect(await guest.read(v.id)).toBe(patternChecksum('after-the-swap'));
    await stack.service.awaitDetach((await stack.service.detachVolume({ server: guest.instance.uuid, volume: v.id })).handle);
    await guest.waitForNoDisk(v.id);
    expect((await stack.blockStorage.getVolume(v.id)).status).toBe('available');
    await expectCheckerClean();
  });

  it("the admin's PUT os-volume_attachments with the destination during the migration: 202, and the same swap", async () => {
    const v = await attached('swap-api');
    const written = await guest.write(v.id, 'through-the-api');
    const destination = await stack.blockStorage.beginMigration(v.id);
    const res = await http('PUT', `/v2.1/servers/${guest.instance.uuid}/os-volume_attachments/${v.id}`, { volumeAttachment: { volumeId: destination.id } });
    expect(res.status).toBe(202);
    const result = await stack.service.awaitSwap(stack.client.workflow.getHandle(swapWorkflowId(guest.instance.uuid, v.id)));
    expect(result).toMatchObject({ volumeId: v.id, newVolumeId: destination.id });
    expect(await guest.read(v.id)).toBe(written);
    await expectCheckerClean();
  });

  it("refusals before anything changes: Nova's 409 when the volume does not migrate; 400 for a destination that is not the migration's, an encrypted one, or another size", async () => {
    const v = await attached('swap-refused');
    const other = await volume(stack, 'swap-other');
    const url = `/v2.1/servers/${guest.instance.uuid}/os-volume_attachments/${v.id}`;
    expect(await http('PUT', url, { volumeAttachment: { volumeId: other.id } })).toMatchObject({
      status: 409,
      body: { conflictingRequest: { message: `volume ${v.id} is not migrating; this API should only be called by Cinder` } },
    });
    const destination = await stack.blockStorage.beginMigration(v.id);
    expect(await http('PUT', url, { volumeAttachment: { volumeId: other.id } }, '2.1')).toMatchObject({
      status: 400,
      body: { badRequest: { message: `Volume ${other.id} is not the destination of the migration of volume ${v.id} (its migration_status is none).` } },
    });
    await stack.blockStorage.migrateVolumeCompletion(v.id, destination.id, true);

    const luks = await stack.service.createVolume({ name: 'swap-luks', size: 1, volumeType: 'luks' });
    await stack.blockStorage.beginMigration(v.id, luks.id);
    expect(await http('PUT', url, { volumeAttachment: { volumeId: luks.id } })).toMatchObject({ status: 400, body: { badRequest: { message: expect.stringMatching(/^Swap volume is not supported for encrypted volumes/) } } });
    await stack.blockStorage.migrateVolumeCompletion(v.id, luks.id, true);

    const bigger = await stack.service.createVolume({ name: 'swap-bigger', size: 2 });
    await expect(stack.blockStorage.beginMigration(v.id, bigger.id)).rejects.toMatchObject({ type: 'InvalidInput' });
    await expect(stack.service.migrateVolume({ volume: other.id })).rejects.toMatchObject({ type: 'VolumeNotAvailable' });

    // nothing changed
    expect((await liveBdm(stack.db, guest.instance.uuid, v.id))?.volumeId).toBe(v.id);
    for (const id of [other.id, luks.id, bigger.id]) expect(await stack.blockStorage.getVolume(id)).toMatchObject({ status: 'available', attachments: [] });
    await expectCheckerClean();
  });
});

describe('a failure before the pivot rolls back; after it, the swap goes forward', () => {
  let v: Volume;
  let written: string;
  let oldFile: string;
  let attachmentId: string | null;

  beforeAll(async () => {
    v = await attached('swap-faults');
    written = await guest.write(v.id, 'kept-through-rollbacks');
    oldFile = await fileOf(v.id);
    attachmentId = (await liveBdm(stack.db, guest.instance.uuid, v.id))!.attachmentId;
  }, 120_000);

  const points: Array<[string, 'before' | 'after']> = [
    ['validateSwap', 'before'],
    ['reserveSwapVolume', 'before'],
    ['reserveSwapVolume', 'after'],
    ['getHostConnector', 'before'],
    ['initializeSwapConnection', 'before'],
    ['initializeSwapConnection', 'after'],
    ['copyDisk', 'before'],
    ['copyDisk', 'after'],
    ['pivotDisk', 'before'],
  ];

  it.each(points)('%s:%s — the old volume stays attached and read by the guest, the new one is available, no copy runs', async (step, phase) => {
    stack.faults.inject(step, phase, { times: 1 });
    let outcome;
    try {
      outcome = await migrate(v.id);
    } finally {
      stack.faults.clear();
    }
    expect(outcome.failure?.message).toMatch(/^Swapping volume .* failed at step \w+: Injected fault .* \(the old volume stays attached and the new one is released\)$/);
    if (step === 'copyDisk' && phase === 'after') saveHistory('swap-rolled-back', outcome.workflowId);
    expect(await diskSources(v.id)).toEqual({ live: oldFile, config: oldFile });
    const disk = diskBySerial(await stack.libvirt.getXml(guest.instance.uuid), v.id)!;
    expect(await stack.libvirt.blockJobInfo(guest.instance.uuid, disk.target!)).toBeNull();
    expect(await liveBdm(stack.db, guest.instance.uuid, v.id)).toMatchObject({ volumeId: v.id, attachmentId, attachStatus: 'attached' });
    expect(await stack.blockStorage.getVolume(v.id)).toMatchObject({ status: 'in-use', migrationStatus: 'error', attachments: [{ attachmentId }] });
    expect(await stack.blockStorage.getVolume(outcome.destination.id)).toMatchObject({ status: 'available', attachments: [], migrationStatus: null });
    expect(await guest.read(v.id)).toBe(written);
    await expectCheckerClean();
  });

  it('pivotDisk:after (the pivot happened, its answer was lost): the swap goes forward and the guest reads the same data', async () => {
    stack.faults.inject('pivotDisk', 'after', { times: 1 });
    let outcome;
    try {
      outcome = await migrate(v.id);
    } finally {
      stack.faults.clear();
    }
    expect(outcome.failure).toBeNull();
    expect(outcome.result).toMatchObject({ volumeId: v.id });
    expect(await guest.read(v.id)).toBe(written);
    expect((await diskSources(v.id)).live).toBe(await fileOf(v.id));
    expect(await fileOf(v.id)).not.toBe(oldFile);
    await expectCheckerClean();
  });
});
