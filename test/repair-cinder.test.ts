/**
 * `tether repair` against a real Cinder (Debian's packages, test/support/cinder.ts): the block
 * storage's side of drift planted with Cinder's own API, as a storage admin does it —
 * `cinder attachment-delete` (DELETE /attachments/{id}, with the service role Cinder requires for an
 * attached one since CVE-2023-2088), `cinder reset-state --state available`
 * (os-reset_status), an attachment made by hand (POST /attachments) beside or instead of the one
 * the BDM records — then `tether repair` (each repair a saga, in history) and Cinder's own view:
 * the attachment made again with the host's connector and completed (connection_info refreshed,
 * as `nova-manage volume_attachment refresh` does), the status set back from the facts, a stray
 * attachment deleted; `tether check` clean.
 * Real Temporal dev server, PostgreSQL, libvirt + QEMU, Cinder.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTestStack, startCinderStack, type CinderStack } from './support/cinder-stack.ts';
import { cinderAvailability } from './support/cinder.ts';
import { needs } from './support/skips.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { liveBdm, bdmConnectionInfo } from '../src/db/block-device-mappings.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { formatDisagreements, inspectInvariants } from '../src/checker/invariants.ts';
import type { Instance, Volume } from '../src/domain/types.ts';
import { runTetherCli, type CliRun } from './support/tether-cli.ts';

const availability = await cinderAvailability();

let stack: CinderStack;
let vm: Instance;

function tether(...args: string[]): Promise<CliRun> {
  return runTetherCli(stack.env, args, { timeoutMs: 240_000 });
}

const inspect = () => inspectInvariants({ db: stack.db, blockStorage: stack.blockStorage, libvirt: stack.libvirt, client: stack.client, controlTaskQueue: stack.controlTaskQueue, host: stack.host });

async function attach(server: Instance, v: Volume) {
  return stack.service.awaitAttach((await stack.service.attachVolume({ server: server.uuid, volume: v.id, device: null })).handle);
}

interface CinderVolume {
  status: string;
  attachments: Array<{ attachment_id: string; server_id: string }>;
}

async function cinderVolume(id: string): Promise<CinderVolume> {
  const got = await stack.cinder.api<{ volume: CinderVolume }>('GET', `/volumes/${id}`);
  expect(got.status, `GET /volumes/${id}`).toBe(200);
  return got.body.volume;
}

async function cinderAttachments(id: string): Promise<Array<{ id: string; instance: string; status: string }>> {
  const got = await stack.cinder.api<{ attachments: Array<{ id: string; instance: string; status: string }> }>('GET', `/attachments?volume_id=${id}`);
  expect(got.status).toBe(200);
  return got.body.attachments;
}

describe('tether repair on a real Cinder', needs('cinder', availability.available ? null : availability.reason), () => {
  const v: Record<string, Volume> = {};
  const before: Record<string, string> = {};

  beforeAll(async () => {
    stack = await startCinderStack({ detachUnplugWaitMs: 1_500 });
    vm = await runningServer(asTestStack(stack), 'vm-repair-cinder');
  }, 300_000);

  afterAll(async () => {
    await stack?.stop();
  }, 60_000);

  it("plants drift with Cinder's own API; the checker reports each kind", async () => {
    for (const name of ['att-deleted', 'reset', 'replaced', 'stray']) v[name] = await volume(asTestStack(stack), `repair-cinder-${name}`);
    for (const name of ['att-deleted', 'reset', 'replaced']) {
      await attach(vm, v[name]!);
      before[name] = (await liveBdm(stack.db, vm.uuid, v[name]!.id))!.attachmentId!;
    }
    // cinder attachment-delete by the storage admin, with the service role Cinder asks for an attached attachment (CVE-2023-2088)
    const asService = { 'X-Service-Roles': 'service' };
    expect((await stack.cinder.api('DELETE', `/attachments/${before['att-deleted']}`, undefined, asService)).status).toBe(200);
    // cinder reset-state --state available (the attachment stays)
    expect((await stack.cinder.api('POST', `/volumes/${v.reset!.id}/action`, { 'os-reset_status': { status: 'available' } })).status).toBe(202);
    // the attachment replaced by hand: deleted, and one made again without a connector (reserved)
    expect((await stack.cinder.api('DELETE', `/attachments/${before.replaced}`, undefined, asService)).status).toBe(200);
    expect((await stack.cinder.api('POST', '/attachments', { attachment: { volume_uuid: v.replaced!.id, instance_uuid: vm.uuid } })).status).toBe(200);
    // an attachment nobody has
    expect((await stack.cinder.api('POST', '/attachments', { attachment: { volume_uuid: v.stray!.id, instance_uuid: vm.uuid } })).status).toBe(200);

    const report = await inspect();
    const kinds = new Set(report.disagreements.map((d) => `${d.kind}:${d.volumeId}`));
    for (const expected of [
      `bdm-without-attachment:${v['att-deleted']!.id}`,
      `volume-status-mismatch:${v.reset!.id}`,
      `attachment-mismatch:${v.replaced!.id}`,
      `unknown-attachment:${v.stray!.id}`,
    ]) expect(kinds, formatDisagreements(report.disagreements)).toContain(expected);
  }, 240_000);

  it("tether repair: Cinder's attachments made again and completed with the host's connector, the status set from the facts, the stray attachment deleted; tether check is clean", async () => {
    const repaired = await tether('repair');
    expect(repaired.code, `${repaired.stdout}\n${repaired.stderr}`).toBe(0);
    expect(repaired.stdout).toMatch(/check after repair: no disagreements/);
    const check = await tether('check');
    expect(check.code, check.stdout).toBe(0);
    expect(check.stdout.trim()).toBe('no disagreements');

    const live = await stack.libvirt.getXml(vm.uuid);
    for (const name of ['att-deleted', 'replaced']) {
      const id = v[name]!.id;
      const bdm = (await liveBdm(stack.db, vm.uuid, id))!;
      expect(bdm.attachmentId, name).not.toBe(before[name]);
      expect(await cinderVolume(id), name).toMatchObject({ status: 'in-use', attachments: [{ attachment_id: bdm.attachmentId, server_id: vm.uuid }] });
      expect(await cinderAttachments(id), name).toEqual([expect.objectContaining({ id: bdm.attachmentId, instance: vm.uuid, status: 'attached' })]);
      // connection_info refreshed from Cinder's answer to the host's connector
      expect((await bdmConnectionInfo(stack.db, bdm.uuid))?.driver_volume_type, name).toBeTruthy();
      expect(diskBySerial(live, id), name).not.toBeNull();
    }
    expect(await cinderVolume(v.reset!.id)).toMatchObject({ status: 'in-use', attachments: [{ attachment_id: before.reset, server_id: vm.uuid }] });
    expect(await cinderVolume(v.stray!.id)).toMatchObject({ status: 'available', attachments: [] });
    expect(await cinderAttachments(v.stray!.id)).toEqual([]);

    // the repaired attachments detach through Cinder like any other
    for (const name of ['att-deleted', 'replaced', 'reset']) {
      await stack.service.awaitDetach((await stack.service.detachVolume({ server: vm.uuid, volume: v[name]!.id })).handle);
      expect(await cinderVolume(v[name]!.id), name).toMatchObject({ status: 'available', attachments: [] });
    }
  }, 300_000);
});
