/**
 * `tether repair` on the real stack (Temporal, PostgreSQL, libvirt + QEMU, the embedded volume
 * service): drift planted from outside as an operator would — a disk unplugged and one plugged with
 * libvirt directly, an attachment deleted in the block storage, a volume's status reset, a BDM row
 * deleted, a BDM's device name changed, a BDM left 'detaching', a LUKS secret removed, a secret
 * defined for a volume nobody holds, an attachment nobody has — then `tether repair --dry-run`
 * (prints the plan, changes nothing), `tether repair` (each repair a saga), and `tether check` is clean.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../src/config.ts';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { formatDisagreements, inspectInvariants } from '../src/checker/invariants.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { buildDiskXml } from '../src/libvirt/disk-xml.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { encryptionSecretUuid } from '../src/host/disk-secrets.ts';
import type { Instance, Volume } from '../src/domain/types.ts';
import { runTetherCli, type CliRun } from './support/tether-cli.ts';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack({ detachUnplugWaitMs: 1_500 });
  vm = await runningServer(stack, 'vm-repair');
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

function tether(...args: string[]): Promise<CliRun> {
  return runTetherCli(stack.env, args, { timeoutMs: 240_000 });
}

function inspect() {
  return inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: stack.host });
}

async function attach(server: Instance, v: Volume) {
  const started = await stack.service.attachVolume({ server: server.uuid, volume: v.id, device: null });
  return stack.service.awaitAttach(started.handle);
}

async function sql(text: string, params: unknown[] = []) {
  return stack.db.query(text, params);
}

async function untilGoneFromLiveXml(instanceUuid: string, serial: string) {
  const deadline = Date.now() + 20_000;
  while (diskBySerial(await stack.libvirt.getXml(instanceUuid), serial)) {
    if (Date.now() > deadline) throw new Error(`disk ${serial} did not leave the live XML of ${instanceUuid}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** RECORD_HISTORIES=1: the repair's history into test/histories/ (replayed by test/replay.test.ts). */
async function recordHistory(name: string, workflowId: string) {
  const json = execFileSync(loadConfig().temporalBinary, ['workflow', 'show', '--address', stack.temporalAddress, '--workflow-id', workflowId, '--output', 'json']);
  writeFileSync(path.join(projectRoot, 'test', 'histories', `${name}.json`), json);
}

async function bdmOf(v: Volume) {
  return liveBdm(stack.db, vm.uuid, v.id);
}

describe('tether repair after drift planted behind tether\'s back', () => {
  const v: Record<string, Volume> = {};

  it('plants one drift per kind; the checker reports each', async () => {
    for (const name of ['unplugged', 'plugged', 'att-deleted', 'bdm-deleted', 'reset', 'renamed', 'detaching', 'leaked', 'reserved']) v[name] = await volume(stack, `repair-${name}`);
    v.luks = await stack.service.createVolume({ name: 'repair-luks', size: 1, volumeType: 'luks' });
    for (const name of ['unplugged', 'att-deleted', 'bdm-deleted', 'reset', 'renamed', 'detaching', 'luks']) await attach(vm, v[name]!);

    // virsh detach-device --live --config
    const disk = diskBySerial(await stack.libvirt.getXml(vm.uuid), v.unplugged!.id)!;
    await stack.libvirt.detachDevice(vm.uuid, disk.xml, { live: true, config: true });
    await untilGoneFromLiveXml(vm.uuid, v.unplugged!.id);
    // virsh attach-device of a volume's file that tether never attached
    const { rows } = await sql('SELECT file_path FROM volumes WHERE id = $1', [v.plugged!.id]);
    const strayXml = buildDiskXml({ connectionInfo: { driver_volume_type: 'file', data: { path: rows[0]!.file_path as string, format: 'qcow2' } }, targetDev: 'sdt', bus: 'scsi', deviceType: 'disk', serial: v.plugged!.id });
    await stack.libvirt.attachDevice(vm.uuid, strayXml, { live: true, config: true });
    // cinder attachment-delete by a storage admin
    await stack.blockStorage.deleteAttachment((await bdmOf(v['att-deleted']!))!.attachmentId!);
    // the BDM row deleted in tether's database
    await sql('DELETE FROM block_device_mappings WHERE uuid = $1', [(await bdmOf(v['bdm-deleted']!))!.uuid]);
    // cinder reset-state --state available
    await sql(`UPDATE volumes SET status = 'available' WHERE id = $1`, [v.reset!.id]);
    // a device name changed in the database
    await sql(`UPDATE block_device_mappings SET device_name = '/dev/sdz' WHERE uuid = $1`, [(await bdmOf(v.renamed!))!.uuid]);
    // a detach that died after its first step
    await sql(`UPDATE block_device_mappings SET attach_status = 'detaching' WHERE uuid = $1`, [(await bdmOf(v.detaching!))!.uuid]);
    await sql(`UPDATE volumes SET status = 'detaching' WHERE id = $1`, [v.detaching!.id]);
    // virsh secret-undefine of the LUKS passphrase
    await stack.libvirt.undefineSecret(encryptionSecretUuid(v.luks!.id));
    // virsh secret-define for a volume nobody holds
    await stack.libvirt.defineSecret(
      `<secret ephemeral='no' private='yes'><uuid>${encryptionSecretUuid(v.leaked!.id)}</uuid><usage type='volume'><volume>/tmp/repair-leaked-${stack.id}</volume></usage></secret>`,
      Buffer.from('not-a-real-passphrase'),
    );
    // an attachment nobody has (cinder attachment-create by hand)
    await stack.blockStorage.createAttachment(v.reserved!.id, vm.uuid);

    const report = await inspect();
    const kinds = new Set(report.disagreements.map((d) => `${d.kind}:${d.volumeId}`));
    for (const expected of [
      `bdm-without-disk:${v.unplugged!.id}`,
      `disk-without-bdm:${v.plugged!.id}`,
      `bdm-without-attachment:${v['att-deleted']!.id}`,
      `disk-without-bdm:${v['bdm-deleted']!.id}`,
      `unknown-attachment:${v['bdm-deleted']!.id}`,
      `volume-status-mismatch:${v.reset!.id}`,
      `device-mismatch:${v.renamed!.id}`,
      `stuck-bdm:${v.detaching!.id}`,
      `missing-secret:${v.luks!.id}`,
      `leaked-secret:${v.leaked!.id}`,
      `unknown-attachment:${v.reserved!.id}`,
    ]) expect(kinds, formatDisagreements(report.disagreements)).toContain(expected);
  }, 240_000);

  it('--dry-run prints what each repair would do and changes nothing', async () => {
    const before = (await inspect()).disagreements;
    const dry = await tether('repair', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/would repair volume .* on server/);
    expect(dry.stdout).toMatch(/put the disk of BDM .* back into the domain/);
    expect(dry.stdout).toMatch(/recreate the BDM .* as \/dev\/sd[a-z]/);
    expect(dry.stdout).toMatch(/remove the disk nobody records/);
    expect(dry.stdout).toMatch(/refresh the connection/);
    expect(dry.stdout).toMatch(/define again the libvirt secrets/);
    expect(dry.stdout).toMatch(/dry run: \d+ repairs planned, nothing changed/);
    expect((await inspect()).disagreements).toEqual(before);
  }, 240_000);

  it('tether repair brings every store back into agreement; tether check is clean', async () => {
    const repaired = await tether('repair');
    expect(repaired.code, `${repaired.stdout}\n${repaired.stderr}`).toBe(0);
    expect(repaired.stdout).toMatch(/✓ volume .* repaired/);
    expect(repaired.stdout).toMatch(/check after repair: no disagreements/);
    const check = await tether('check');
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout.trim()).toBe('no disagreements');

    const live = await stack.libvirt.getXml(vm.uuid);
    expect(diskBySerial(live, v.unplugged!.id)).not.toBeNull();
    expect(diskBySerial(live, v.plugged!.id)).toBeNull();
    expect((await stack.blockStorage.getVolume(v['att-deleted']!.id)).status).toBe('in-use');
    expect((await bdmOf(v['att-deleted']!))?.attachmentId).toBe((await stack.blockStorage.findAttachment(v['att-deleted']!.id, vm.uuid))?.attachmentId);
    const recreated = await bdmOf(v['bdm-deleted']!);
    expect(recreated).toMatchObject({ attachStatus: 'attached', deviceName: `/dev/${diskBySerial(live, v['bdm-deleted']!.id)!.target}` });
    expect((await stack.blockStorage.getVolume(v.reset!.id)).status).toBe('in-use');
    expect((await bdmOf(v.renamed!))?.deviceName).toBe(`/dev/${diskBySerial(live, v.renamed!.id)!.target}`);
    expect((await bdmOf(v.detaching!))?.attachStatus).toBe('attached');
    expect((await stack.blockStorage.getVolume(v.detaching!.id)).status).toBe('in-use');
    const secrets = new Set((await stack.libvirt.listSecrets()).map((s) => s.uuid));
    expect(secrets.has(encryptionSecretUuid(v.luks!.id))).toBe(true);
    expect(secrets.has(encryptionSecretUuid(v.leaked!.id))).toBe(false);
    expect((await stack.blockStorage.getVolume(v.reserved!.id)).status).toBe('available');

    if (process.env.RECORD_HISTORIES === '1') {
      await recordHistory('repair-pair-recreated-bdm', `repair-${vm.uuid}-${v['bdm-deleted']!.id}`);
      await recordHistory('repair-pair-restored-disk', `repair-${vm.uuid}-${v.unplugged!.id}`);
      await recordHistory('repair-pair-removed-disk', `repair-${vm.uuid}-${v.plugged!.id}`);
      await recordHistory('repair-volume-status', `repair-volume-${v.reset!.id}`);
      await recordHistory('repair-leaked-secret', `repair-secret-${stack.host}-${v.leaked!.id}`);
    }
  }, 300_000);

  it('check --repair: a disk unplugged again is put back, with progress output', async () => {
    const disk = diskBySerial(await stack.libvirt.getXml(vm.uuid, { inactive: true }), v.unplugged!.id)!;
    await stack.libvirt.detachDevice(vm.uuid, disk.xml, { live: false, config: true });
    const out = await tether('check', '--repair');
    expect(out.code, `${out.stdout}\n${out.stderr}`).toBe(0);
    expect(out.stdout).toMatch(/bdm-without-disk/);
    expect(out.stdout).toMatch(/repairing volume .* as repair-/);
    expect(out.stdout).toMatch(/check after repair: no disagreements/);
  }, 240_000);
});
