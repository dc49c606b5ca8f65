/**
 * SwapVolume alone, with fake activities: every step once, in order; each step before the pivot
 * failing in turn rolls back (the copy dropped, the new volume released); a pivot whose answer was
 * lost but which happened goes forward; past the pivot nothing is undone. The real-stack tests are
 * test/swap-volume.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { swapProgressQuery, type SwapResult } from '../../../src/domain/contracts/swap-volume.ts';
import { FakeActivities, FakeWorkers, startWorkflowEnvironment } from '../support/workflow-env.ts';
import { CONNECTOR } from '../support/fakes.ts';

let env: TestWorkflowEnvironment;
let workers: FakeWorkers;

function swapFakes(world: { pivotedAnyway?: boolean } = {}) {
  return new FakeActivities({
    isEarlierOperationRunning: async () => false,
    awaitEarlierOperation: async () => ({ waitedMs: 1 }),
    validateSwap: async () => ({ bdmUuid: 'bdm-1', oldAttachmentId: 'att-old', deviceName: '/dev/sdb', host: 'fake-host' }),
    takeGeneration: async () => ({ generation: 9 }),
    reserveSwapVolume: async () => ({ attachmentId: 'att-new' }),
    getHostConnector: async () => CONNECTOR,
    initializeSwapConnection: async () => ({ driverVolumeType: 'file' }),
    copyDisk: async () => ({ target: 'sdb', bytes: 1024 }),
    pivotDisk: async () => ({ target: 'sdb' }),
    inspectSwapDisk: async () => ({ target: 'sdb', pivoted: world.pivotedAnyway ?? false, copying: !world.pivotedAnyway }),
    abortDiskCopy: async () => ({ aborted: true }),
    abandonSwap: async () => undefined,
    recordSwapPivot: async () => undefined,
    updatePersistentDisk: async () => ({ updated: true }),
    completeAttachment: async () => undefined,
    deleteAttachment: async () => ({ deleted: true }),
    completeVolumeMigration: async (input: { oldVolumeId: string }) => ({ saveVolumeId: input.oldVolumeId }),
    recordSwapOnBdm: async () => undefined,
  });
}

beforeAll(async () => {
  env = await startWorkflowEnvironment();
  workers = await new FakeWorkers(env).start(swapFakes().names);
}, 60_000);

afterAll(async () => {
  await workers?.stop();
  await env?.teardown();
});

const EARLIER = ['isEarlierOperationRunning', 'isEarlierOperationRunning', 'isEarlierOperationRunning'];
const BEFORE_PIVOT = ['validateSwap', 'takeGeneration', 'reserveSwapVolume', 'getHostConnector', 'initializeSwapConnection', 'copyDisk', 'pivotDisk'];
const AFTER_PIVOT = ['recordSwapPivot', 'updatePersistentDisk', 'completeAttachment', 'deleteAttachment', 'completeVolumeMigration', 'recordSwapOnBdm'];

async function swap(fakes: ReturnType<typeof swapFakes>) {
  const input = { instanceUuid: workers.instanceUuid, oldVolumeId: randomUUID(), newVolumeId: randomUUID() };
  const run = await workers.run<SwapResult>('swapVolume', `swap-${input.instanceUuid}-${input.oldVolumeId}`, fakes, input);
  return { ...run, input, progress: await run.handle.query(swapProgressQuery), finalState: await run.state() };
}

describe('swapVolume with fake activities', () => {
  it('every step once, in order: the BDM keeps the volume id the block storage saves, with the new attachment', async () => {
    const fakes = swapFakes();
    const { result, input, finalState } = await swap(fakes);
    expect(fakes.calls).toEqual([...EARLIER, ...BEFORE_PIVOT, ...AFTER_PIVOT]);
    expect(result).toEqual({ ...input, volumeId: input.oldVolumeId, attachmentId: 'att-new', target: 'sdb' });
    expect(fakes.inputOf('takeGeneration')).toMatchObject({ pairs: [{ volumeId: input.oldVolumeId }, { volumeId: input.newVolumeId }] });
    // host steps act on the disk the guest knows (the old volume's serial) and carry the generation
    expect(fakes.inputOf('copyDisk')).toMatchObject({ volumeId: input.oldVolumeId, generation: 9 });
    expect(fakes.inputOf('deleteAttachment')).toEqual({ volumeId: input.oldVolumeId, instanceUuid: input.instanceUuid, attachmentId: 'att-old' });
    expect(fakes.inputOf('completeAttachment')).toEqual({ attachmentId: 'att-new' });
    expect(fakes.inputOf('completeVolumeMigration')).toMatchObject({ error: false });
    expect(finalState).toBe('swapped');
  });

  // [failing activity, what runs after it]
  const rolledBack: [string, string[]][] = [
    ['validateSwap', ['abandonSwap']],
    ['takeGeneration', ['abandonSwap']],
    ['reserveSwapVolume', ['abandonSwap']],
    ['getHostConnector', ['abandonSwap']],
    ['initializeSwapConnection', ['abandonSwap']],
    ['copyDisk', ['abortDiskCopy', 'abandonSwap']],
    ['pivotDisk', ['inspectSwapDisk', 'abortDiskCopy', 'abandonSwap']],
  ];

  it.each(rolledBack)('%s fails before the pivot: the copy is dropped and the new volume released', async (activity, after) => {
    const fakes = swapFakes().failAt(activity as never);
    const { failure, finalState, progress } = await swap(fakes);
    expect(failure!.message).toMatch(new RegExp(`^Swapping volume .* failed at step \\w+: fake ${activity} failed \\(the old volume stays attached and the new one is released\\)$`));
    expect(fakes.callsAfter(activity as never)).toEqual(after);
    expect(fakes.calls).not.toContain('recordSwapPivot');
    expect(finalState).toBe('rolled-back');
    expect(progress.steps.filter((s) => s.status === 'compensated').map((s) => s.step)).toEqual(after.filter((a) => a !== 'inspectSwapDisk'));
  });

  it('a pivot whose answer was lost but which happened: the swap goes forward, nothing is undone', async () => {
    const fakes = swapFakes({ pivotedAnyway: true }).failAt('pivotDisk');
    const { result, finalState } = await swap(fakes);
    expect(result).toMatchObject({ target: 'sdb' });
    expect(fakes.callsAfter('pivotDisk')).toEqual(['inspectSwapDisk', ...AFTER_PIVOT]);
    expect(finalState).toBe('swapped');
  });

  it('a final refusal after the pivot: the run fails (state failed) without undoing anything', async () => {
    const fakes = swapFakes().failAt('completeVolumeMigration');
    const { failure, finalState } = await swap(fakes);
    expect(failure!.message).toMatch(/failed after the disk pivoted: fake completeVolumeMigration failed/);
    expect(fakes.calls).not.toContain('abortDiskCopy');
    expect(fakes.calls).not.toContain('abandonSwap');
    expect(fakes.calls).not.toContain('recordSwapOnBdm');
    expect(finalState).toBe('failed');
  });
});
