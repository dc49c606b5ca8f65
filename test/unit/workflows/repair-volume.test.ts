/**
 * The repair sagas alone, with fake activities: the plan follows what the stores say (a lost BDM
 * recreated and its connection refreshed, a stray disk removed, an attachment nobody has deleted),
 * a repair that finds everything in agreement does nothing, a failure after the recreated BDM undoes
 * it and deletes the attachment the repair made (never the one there before), a newer operation of
 * the pair stops the repair without undoing anything under it, and the repair waits for the pair's
 * running operations before it takes the generation. The real-stack tests are test/repair.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { repairProgressQuery, type RepairResult } from '../../../src/domain/contracts/repair.ts';
import type { PairSnapshot } from '../../../src/domain/repair-plan.ts';
import { FakeActivities, FakeWorkers, startWorkflowEnvironment } from '../support/workflow-env.ts';
import { CONNECTOR } from '../support/fakes.ts';

let env: TestWorkflowEnvironment;
let workers: FakeWorkers;

type Stores = Omit<PairSnapshot, 'disk'>;

function stores(over: Partial<Stores> = {}): Stores {
  return {
    instanceUuid: workers.instanceUuid,
    volumeId: 'vol-1',
    instance: { state: 'live', vmState: 'active', host: 'fake-host', taskState: null },
    bdm: { uuid: 'bdm-1', attachStatus: 'attached', deviceName: '/dev/sdb', diskBus: 'scsi', attachmentId: 'att-1', hasConnectionInfo: true },
    volume: { status: 'in-use', multiattach: false, attachmentStatuses: ['attached'] },
    attachment: { id: 'att-1', status: 'attached' },
    ...over,
  };
}

const DISK: NonNullable<PairSnapshot['disk']> = { domain: true, active: true, configTarget: 'sdb', liveTarget: 'sdb', missingSecrets: [] };

function repairFakes(s: Stores, disk: PairSnapshot['disk'] = DISK, world: { running?: string[][]; superseded?: string } = {}) {
  const running = [...(world.running ?? [])];
  const guarded = (name: string) => async () => {
    if (world.superseded === name) {
      const { ApplicationFailure } = await import('@temporalio/common');
      throw ApplicationFailure.nonRetryable(`newer operation owns the pair`, 'OperationSuperseded');
    }
    return undefined;
  };
  return new FakeActivities({
    awaitPairOperations: async () => ({ waitedMs: 0 }),
    pairOperationsRunning: async () => ({ running: running.shift() ?? [] }),
    observeGeneration: async () => ({ generation: 5 }),
    readPairStores: async () => s,
    inspectPairDisk: async () => disk!,
    getHostConnector: async () => CONNECTOR,
    recreateBdm: async () => ({ created: true }),
    ensureAttachment: async () => ({ attachmentId: s.attachment?.id ?? 'att-new', created: !s.attachment }),
    connectAttachment: async () => undefined,
    completeRepairAttachment: guarded('completeRepairAttachment'),
    reserveRepairAttachment: async () => ({ attachmentId: 'att-new' }),
    deleteAttachmentUnless: async () => ({ deleted: true }),
    setRepairDeviceName: guarded('setRepairDeviceName'),
    attachDisk: async () => ({ target: 'sdb', live: true }),
    detachDisk: async () => ({ removed: true }),
    defineDiskSecrets: async () => ({ defined: 1 }),
    deleteRepairAttachment: async () => undefined,
    retireBdm: async () => ({ retired: true }),
    retireRecreatedBdm: async () => undefined,
    syncVolumeStatus: async () => null,
    removeQemuOrphanDisks: async () => ({ removed: ['scsi0-0-0-3'] }),
  });
}

let names: string[];

beforeAll(async () => {
  env = await startWorkflowEnvironment();
  workers = new FakeWorkers(env);
  names = repairFakes(stores({} as never)).names;
  await workers.start(names);
}, 60_000);

afterAll(async () => {
  await workers?.stop();
  await env?.teardown();
});

async function repair(fakes: ReturnType<typeof repairFakes>) {
  const volumeId = randomUUID();
  const { handle, state, ...outcome } = await workers.run<RepairResult>('repairVolumePair', `repair-${workers.instanceUuid}-${volumeId}`, fakes, {
    instanceUuid: workers.instanceUuid,
    volumeId,
    reason: 'unit test',
  });
  return { ...outcome, progress: await handle.query(repairProgressQuery), state: await state() };
}

const PREAMBLE = ['awaitPairOperations', 'observeGeneration', 'pairOperationsRunning', 'readPairStores', 'inspectPairDisk'];

describe('repairVolumePair with fake activities', () => {
  it('stores that agree: nothing to do, nothing changed', async () => {
    const fakes = repairFakes(stores());
    const { result, state } = await repair(fakes);
    expect(result).toEqual({ outcome: 'nothing-to-do', actions: [], notes: [] });
    expect(fakes.calls).toEqual(PREAMBLE);
    expect(state).toBe('repaired');
  });

  it('bdm-without-disk: the disk is put back with the generation the repair saw', async () => {
    const fakes = repairFakes(stores(), { ...DISK, liveTarget: null });
    const { result } = await repair(fakes);
    expect(result!.outcome).toBe('repaired');
    expect(fakes.calls).toEqual([...PREAMBLE, 'attachDisk']);
    expect(fakes.inputOf('attachDisk')).toMatchObject({ bdmUuid: 'bdm-1', generation: 5 });
  });

  it('disk-without-bdm with no attachment: the disk is removed', async () => {
    const fakes = repairFakes(stores({ bdm: null, attachment: null, volume: { status: 'available', multiattach: false, attachmentStatuses: [] } }));
    await repair(fakes);
    expect(fakes.calls).toEqual([...PREAMBLE, 'detachDisk']);
  });

  it('the BDM row lost (disk and attachment kept): recreated as the disk\'s target, then its connection refreshed', async () => {
    const fakes = repairFakes(stores({ bdm: null }));
    const { result } = await repair(fakes);
    expect(fakes.calls).toEqual([...PREAMBLE, 'recreateBdm', 'ensureAttachment', 'getHostConnector', 'connectAttachment', 'completeRepairAttachment']);
    expect(fakes.inputOf('recreateBdm')).toMatchObject({ device: '/dev/sdb', attachmentId: 'att-1', generation: 5 });
    expect(result!.actions).toHaveLength(2);
  });

  it('a failure after the recreated BDM: the BDM is retired again, the attachment that was there is kept', async () => {
    const fakes = repairFakes(stores({ bdm: null }));
    fakes.failAt('connectAttachment');
    const { failure, state } = await repair(fakes);
    expect(failure!.message).toMatch(/failed at step refreshConnection: fake connectAttachment failed \(what this repair changed was undone\)/);
    expect(fakes.callsAfter('connectAttachment')).toEqual(['deleteAttachmentUnless', 'retireRecreatedBdm']);
    expect(fakes.inputOf('deleteAttachmentUnless')).toMatchObject({ keep: 'att-1' });
    expect(state).toBe('rolled-back');
  });

  it('bdm-without-attachment: refreshed; a failure deletes the attachment the repair made', async () => {
    const s = stores({ attachment: null, volume: { status: 'available', multiattach: false, attachmentStatuses: [] } });
    const fakes = repairFakes(s).failAt('completeRepairAttachment');
    const { failure } = await repair(fakes);
    expect(failure).not.toBeNull();
    expect(fakes.callsAfter('completeRepairAttachment')).toEqual(['deleteAttachmentUnless']);
    expect(fakes.inputOf('deleteAttachmentUnless')).toMatchObject({ keep: null });
  });

  it('bdm-without-attachment on a volume left in-use: refreshed, and the status then agrees (no sync)', async () => {
    const fakes = repairFakes(stores({ attachment: null, volume: { status: 'in-use', multiattach: false, attachmentStatuses: [] } }));
    await repair(fakes);
    expect(fakes.calls).toEqual([...PREAMBLE, 'ensureAttachment', 'getHostConnector', 'connectAttachment', 'completeRepairAttachment']);
  });

  it('a newer operation takes the pair: the repair stops, superseded, and undoes nothing under it', async () => {
    const fakes = repairFakes(stores({ bdm: null }), DISK, { superseded: 'completeRepairAttachment' });
    const { result, failure } = await repair(fakes);
    expect(failure).toBeNull();
    expect(result!.outcome).toBe('superseded');
    expect(fakes.calls.at(-1)).toBe('completeRepairAttachment');
    expect(fakes.calls).not.toContain('retireRecreatedBdm');
    expect(fakes.calls).not.toContain('deleteAttachmentUnless');
  });

  it('an operation of the pair started while the generation was taken: the repair waits again and takes it anew', async () => {
    const fakes = repairFakes(stores(), DISK, { running: [[`attach-x`]] });
    await repair(fakes);
    expect(fakes.calls.slice(0, 6)).toEqual(['awaitPairOperations', 'observeGeneration', 'pairOperationsRunning', 'awaitPairOperations', 'observeGeneration', 'pairOperationsRunning']);
  });

  it('a server action holds the instance: the host is not asked, nothing is changed', async () => {
    const fakes = repairFakes(stores({ instance: { state: 'live', vmState: 'active', host: 'fake-host', taskState: 'shelving' } }), { ...DISK, liveTarget: null });
    const { result } = await repair(fakes);
    expect(result!.outcome).toBe('skipped');
    expect(fakes.calls).toEqual(PREAMBLE.slice(0, -1));
  });

  it('orphan-bdm (instance deleted): attachment deleted and BDM retired, the host not asked', async () => {
    const fakes = repairFakes(stores({ instance: { state: 'deleted', vmState: 'deleted', host: 'fake-host', taskState: null } }));
    await repair(fakes);
    expect(fakes.calls).toEqual([...PREAMBLE.slice(0, -1), 'deleteRepairAttachment', 'retireBdm']);
  });

  it('qemu orphans: removed on the instance queue', async () => {
    const fakes = repairFakes(stores());
    const { result } = await workers.run<RepairResult>('repairQemuOrphans', `repair-qemu-${randomUUID()}`, fakes, { instanceUuid: workers.instanceUuid, reason: 'unit test' });
    expect(result).toMatchObject({ outcome: 'repaired', actions: [expect.stringMatching(/scsi0-0-0-3/)] });
  });
});
