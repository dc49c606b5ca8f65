/**
 * The reconciler on the real stack with a short period: its Temporal Schedule is created
 * idempotently; a disk unplugged behind tether's back is put back by a repair the reconciler starts
 * only once two runs in a row saw it; a kind the policy reports only is reported and left alone;
 * what it found and did is in the metrics and the notifications outbox.
 */
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
});
