/**
 * The reconciler on the real stack with a short period: its Temporal Schedule is created
 * idempotently; a disk unplugged behind tether's back is put back by a repair the reconciler starts
 * only once two runs in a row saw it; a kind the policy reports only is reported and left alone;
 * what it found and did is in the metrics and the notifications outbox. The two kinds a host's
 * check could not see before: a disk QEMU holds behind libvirt (its query-block travels in the
 * host's snapshot) and the BDM of a server deleted on the host whose domain is gone are repaired;
 * a deleted server whose domain is still defined is left alone (its QEMU may hold the disk).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { diskBySerial } from '../src/host/domain-disks.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { ensureReconcileSchedule } from '../src/repair/reconcile-schedule.ts';
import { RECONCILE_WORKFLOW, type ReconcileResult } from '../src/domain/contracts/reconcile.ts';
import { registry } from '../src/metrics/tether-metrics.ts';
import { findOrphanDisks } from '../src/host/qemu-orphan-disks.ts';
import type { Instance } from '../src/domain/types.ts';

let stack: TestStack;
let vm: Instance;

beforeAll(async () => {
  stack = await startTestStack({ detachUnplugWaitMs: 1_500 });
  vm = await runningServer(stack, 'vm-reconcile');
}, 120_000);

afterAll(async () => {
  await stack?.client.schedule.getHandle(`tether-reconcile-${stack.controlTaskQueue}`).delete().catch(() => undefined);
  await stack?.stop();
});

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 90_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function reconcileRuns(): Promise<Array<{ workflowId: string; runId: string; startTime: Date; result: ReconcileResult }>> {
  const runs: Array<{ workflowId: string; runId: string; startTime: Date; result: ReconcileResult }> = [];
  for await (const w of stack.client.workflow.list({ query: `WorkflowType = '${RECONCILE_WORKFLOW}' AND TaskQueue = '${stack.controlTaskQueue}' AND ExecutionStatus = 'Completed'` })) {
    runs.push({ workflowId: w.workflowId, runId: w.runId, startTime: w.startTime, result: (await stack.client.workflow.getHandle(w.workflowId, w.runId).result()) as ReconcileResult });
  }
  return runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
}

describe('the reconciler', () => {
  it('repairs drift seen by two runs in a row, reports a report-only kind, and says what it did', async () => {
    const unplugged = await volume(stack, 'rec-unplugged');
    const renamed = await volume(stack, 'rec-renamed');
    for (const v of [unplugged, renamed]) await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id, device: null })).handle);

    const disk = diskBySerial(await stack.libvirt.getXml(vm.uuid, { inactive: true }), unplugged.id)!;
    await stack.libvirt.detachDevice(vm.uuid, disk.xml, { live: false, config: true });
    const renamedBdm = (await liveBdm(stack.db, vm.uuid, renamed.id))!;
    await stack.db.query(`UPDATE block_device_mappings SET device_name = '/dev/sdz' WHERE uuid = $1`, [renamedBdm.uuid]);

    const config = { intervalSeconds: 2, hosts: [stack.host], reportOnly: ['device-mismatch' as const], maxRepairs: 5 };
    expect((await ensureReconcileSchedule(stack.client, { controlTaskQueue: stack.controlTaskQueue, config })).state).toBe('created');
    expect((await ensureReconcileSchedule(stack.client, { controlTaskQueue: stack.controlTaskQueue, config })).state).toBe('updated');

    await until('the disk back in the persistent config', async () => diskBySerial(await stack.libvirt.getXml(vm.uuid, { inactive: true }), unplugged.id));
    const runs = await until('a reconcile run that started the repair', async () => {
      const r = await reconcileRuns();
      return r.some((x) => x.result.started.length > 0) && r;
    });
    const repairing = runs.findIndex((x) => x.result.started.length > 0);
    // the first run that saw the drift only recorded it
    expect(repairing).toBeGreaterThanOrEqual(1);
    expect(runs[0]!.result.hosts[0]!.disagreements).toBeGreaterThanOrEqual(2);
    expect(runs[0]!.result.started).toEqual([]);
    expect(runs[repairing]!.result.started).toEqual([expect.objectContaining({ workflowId: `repair-${vm.uuid}-${unplugged.id}`, outcome: 'repaired' })]);
    expect(runs[repairing]!.result.reportOnly).toBe(1);

    // report only: the renamed BDM is left as it is, and stays recorded
    expect((await liveBdm(stack.db, vm.uuid, renamed.id))!.deviceName).toBe('/dev/sdz');
    // the next run no longer sees the repaired drift and forgets it; the reported one stays
    await until('the repaired finding forgotten', async () => {
      const { rows } = await stack.db.query<{ kind: string }>('SELECT kind FROM reconcile_findings WHERE scope = $1', [stack.host]);
      return rows.length === 1 && rows[0]!.kind === 'device-mismatch';
    });

    // what it found and did: metrics and notifications
    const metrics = await registry.metricsText();
    expect(metrics).toMatch(/tether_reconcile_repairs_total\{target="pair",outcome="repaired"\} [1-9]/);
    expect(metrics).toMatch(/tether_reconcile_findings_total\{kind="device-mismatch",action="report_only"\} [1-9]/);
    const { rows: events } = await stack.db.query<{ event_type: string; volume_id: string }>(
      `SELECT event_type, volume_id FROM notifications_outbox WHERE event_type LIKE 'instance.volume_re%' OR event_type LIKE 'instance.volume_drift%'`,
    );
    expect(events).toEqual(expect.arrayContaining([
      { event_type: 'instance.volume_repair.end', volume_id: unplugged.id },
      { event_type: 'instance.volume_drift.found', volume_id: renamed.id },
    ]));

    if (process.env.RECORD_HISTORIES === '1') {
      const w = runs[repairing]!;
      const history = await stack.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
      writeFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories', 'reconcile-repaired.json'), historyToJSON(history));
    }

    // off: a period of 0 removes the schedule
    expect((await ensureReconcileSchedule(stack.client, { controlTaskQueue: stack.controlTaskQueue, config: { ...config, intervalSeconds: 0 } })).state).toBe('removed');
  }, 180_000);

  it("reaches qemu-orphan-disk and orphan-bdm: QEMU's orphan removed, a gone server's BDM retired; a deleted server whose domain exists is left alone", async () => {
    const gone = await runningServer(stack, 'vm-reconcile-gone');
    const kept = await runningServer(stack, 'vm-reconcile-kept');
    const goneVolume = await volume(stack, 'rec-orphan-bdm');
    const keptVolume = await volume(stack, 'rec-kept');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: gone.uuid, volume: goneVolume.id, device: null })).handle);
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: kept.uuid, volume: keptVolume.id, device: null })).handle);
    // an operator marks both servers deleted by hand; only one's domain is removed
    for (const s of [gone, kept]) await stack.db.query(`UPDATE instances SET deleted_at = now(), vm_state = 'deleted' WHERE uuid = $1`, [s.uuid]);
    await stack.libvirt.destroyDomain(gone.uuid);
    await stack.libvirt.undefineDomain(gone.uuid);
    // a disk QEMU holds that libvirt does not know (as libvirtd's death mid-hot-plug leaves it)
    const file = path.join(stack.volumeDir, `rec-orphan-${stack.id}.qcow2`);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
    execFileSync('chown', ['libvirt-qemu:libvirt-qemu', file]);
    const qmp = (execute: string, args: Record<string, unknown>) => stack.libvirt.qemuMonitorCommand(vm.uuid, { execute, arguments: args });
    await qmp('blockdev-add', { driver: 'file', filename: file, 'node-name': 'rec-42-storage' });
    await qmp('blockdev-add', { driver: 'qcow2', file: 'rec-42-storage', 'node-name': 'rec-42-format' });
    await qmp('device_add', { driver: 'scsi-hd', bus: 'scsi0.0', channel: 0, 'scsi-id': 0, lun: 42, drive: 'rec-42-format', id: 'scsi0-0-0-42' });
    expect((await findOrphanDisks(stack.libvirt, vm.uuid)).map((o) => o.id)).toEqual(['scsi0-0-0-42']);

    const config = { intervalSeconds: 2, hosts: [stack.host], reportOnly: [], maxRepairs: 5 };
    await ensureReconcileSchedule(stack.client, { controlTaskQueue: stack.controlTaskQueue, config });
    try {
      await until("QEMU's orphan removed", async () => (await findOrphanDisks(stack.libvirt, vm.uuid)).length === 0);
      await until("the gone server's BDM retired and its attachment deleted", async () =>
        (await liveBdm(stack.db, gone.uuid, goneVolume.id)) === null && (await stack.blockStorage.getVolume(goneVolume.id)).status === 'available');
      // the run that started a repair completes once its repairs have: wait for it
      const wanted = [`repair-qemu-${vm.uuid}`, `repair-${gone.uuid}-${goneVolume.id}`];
      const started = await until('the reconcile runs that started both repairs', async () => {
        const ids = (await reconcileRuns()).flatMap((r) => r.result.started.map((x) => x.workflowId));
        return wanted.every((id) => ids.includes(id)) && ids;
      });
      // the deleted server whose domain is still defined: nothing released under its QEMU
      expect(started.some((id) => id.includes(kept.uuid))).toBe(false);
      expect(await liveBdm(stack.db, kept.uuid, keptVolume.id)).toMatchObject({ attachStatus: 'attached' });
      expect((await stack.blockStorage.getVolume(keptVolume.id)).status).toBe('in-use');
    } finally {
      await ensureReconcileSchedule(stack.client, { controlTaskQueue: stack.controlTaskQueue, config: { ...config, intervalSeconds: 0 } });
      await stack.libvirt.destroyDomain(kept.uuid).catch(() => undefined);
      await stack.libvirt.undefineDomain(kept.uuid).catch(() => undefined);
    }
  }, 180_000);
});
