/**
 * ExtendVolume alone, with fake activities: tether's own os-extend (the volume begins extending, the
 * file grows where no QEMU holds it, the disk grows, the size is recorded) and a volume-extended
 * event (the size read from the block storage); each step failing in turn: before the disk grew the
 * volume rolls back to in-use, after it the extend only moves forward; events that arrive during a
 * run make it resize again. The real-stack tests are test/extend-volume.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WorkflowFailedError } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import {
  extendAcceptedUpdate,
  extendProgressQuery,
  volumeExtendedSignal,
  type ExtendResult,
  type ExtendVolumeWorkflow,
} from '../../../src/domain/contracts/extend-volume.ts';
import { TetherState } from '../../../src/temporal/search-attributes.ts';
import { tetherFakes, type TetherFakes } from '../support/fakes.ts';
import { useFakeWorkers } from '../support/fake-suite.ts';

const suite = useFakeWorkers();

const EARLIER = ['isEarlierOperationRunning', 'isEarlierOperationRunning'];
const FORWARD = [...EARLIER, 'validateExtend', 'takeGeneration', 'beginExtending', 'growVolume', 'resizeDisk', 'finishExtending', 'recordVolumeSize'];

async function extend(fakes: TetherFakes, newSize: number | null = 3) {
  const input = { instanceUuid: suite.workers.instanceUuid, volumeId: randomUUID(), newSize };
  const workflowId = `extend-${input.instanceUuid}-${input.volumeId}`;
  suite.workers.use(workflowId, fakes);
  const handle = await suite.env.client.workflow.start<ExtendVolumeWorkflow>('extendVolume', { taskQueue: suite.workers.taskQueue, workflowId, args: [input] });
  const outcome = await handle.result().then(
    (result: ExtendResult) => ({ result, failure: null }),
    (err: unknown) => ({ result: null, failure: err instanceof WorkflowFailedError ? (err.cause as ApplicationFailure) : (err as Error) }),
  );
  const progress = await handle.query(extendProgressQuery);
  const state = (await handle.describe()).typedSearchAttributes.get(TetherState);
  return { ...outcome, progress, state, handle };
}

describe('extendVolume with fake activities', () => {
  it("tether's own os-extend: every step once, in order; the size recorded on the BDM", async () => {
    const fakes = tetherFakes();
    const { result, state, progress } = await extend(fakes, 3);
    expect(result).toEqual({ instanceUuid: suite.workers.instanceUuid, volumeId: expect.any(String), size: 3, live: true, capacity: 3 * 1024 ** 3 });
    expect(fakes.calls).toEqual(FORWARD);
    expect(fakes.inputOf('resizeDisk')).toMatchObject({ sizeGb: 3 });
    expect(fakes.inputOf('recordVolumeSize')).toEqual({ bdmUuid: 'bdm-1', size: 3 });
    expect(state).toBe('extended');
    expect(progress.accepted).toMatchObject({ newSize: 3 });
  });

  it('a volume-extended event: the size the block storage reports, no block-storage step of its own', async () => {
    const fakes = tetherFakes({ blockStorageSize: () => 5 });
    const { result } = await extend(fakes, null);
    expect(result).toMatchObject({ size: 5 });
    expect(fakes.calls).toEqual([...EARLIER, 'validateExtend', 'takeGeneration', 'resizeDisk', 'recordVolumeSize']);
    expect(fakes.inputOf('resizeDisk')).toMatchObject({ generation: 7 });
  });

  it('a multiattach volume: its other servers are told once it grew', async () => {
    const other = { instanceUuid: randomUUID(), host: 'h2' };
    const fakes = tetherFakes({ otherInstances: [other] });
    await extend(fakes, 2);
    expect(fakes.calls.at(-1)).toBe('notifyAttachedInstances');
    expect(fakes.inputOf('notifyAttachedInstances')).toMatchObject({ instances: [other] });
  });

  // [failing activity, what runs after it]
  const rolledBack: [string, string[]][] = [
    ['validateExtend', []],
    ['takeGeneration', []],
    ['beginExtending', ['rollExtending']],
    ['growVolume', ['rollExtending']],
    ['resizeDisk', ['rollExtending']],
  ];

  it.each(rolledBack)('%s fails before the disk grew: the volume rolls back to in-use', async (activity, compensations) => {
    const fakes = tetherFakes().failAt(activity as never);
    const { failure, state, progress } = await extend(fakes);
    expect(failure!.message).toMatch(new RegExp(`^Extending volume .* failed at step ${activity}: fake ${activity} failed \\(the volume keeps the size it had\\)$`));
    expect(fakes.calls.slice(fakes.calls.indexOf(activity) + 1)).toEqual(compensations);
    expect(state).toBe('rolled-back');
    expect(progress.steps.filter((s) => s.status === 'compensated').map((s) => s.step)).toEqual(compensations);
  });

  it('the accepted update: answers with the new size once the volume is extending, or, refused, only after the rollback', async () => {
    for (const [fakes, accepted] of [[tetherFakes(), true], [tetherFakes().failAt('beginExtending'), false]] as const) {
      const volumeId = randomUUID();
      const workflowId = `extend-${suite.workers.instanceUuid}-${volumeId}`;
      suite.workers.use(workflowId, fakes);
      const handle = await suite.env.client.workflow.start<ExtendVolumeWorkflow>('extendVolume', {
        taskQueue: suite.workers.taskQueue,
        workflowId,
        args: [{ instanceUuid: suite.workers.instanceUuid, volumeId, newSize: 4 }],
      });
      const answer = await handle.executeUpdate(extendAcceptedUpdate).then(
        (a) => a,
        (err: unknown) => err,
      );
      if (accepted) expect(answer).toEqual({ instanceUuid: suite.workers.instanceUuid, volumeId, newSize: 4 });
      else {
        expect((answer as { cause?: Error }).cause?.message).toBe('fake beginExtending failed');
        // refused only once the rollback has run
        expect(fakes.calls.at(-1)).toBe('rollExtending');
      }
      await handle.result().catch(() => undefined);
    }
  });

  it('events that arrive while a run is in flight: it resizes once more, to the size the block storage then reports', async () => {
    let size = 2;
    // the first resize holds until a second event has come in (Cinder extended again meanwhile)
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const fakes = tetherFakes({ blockStorageSize: () => size, beforeResize: () => held });
    const input = { instanceUuid: suite.workers.instanceUuid, volumeId: randomUUID(), newSize: null };
    const workflowId = `extend-${input.instanceUuid}-${input.volumeId}`;
    suite.workers.use(workflowId, fakes);
    const handle = await suite.env.client.workflow.signalWithStart<ExtendVolumeWorkflow, []>('extendVolume', {
      taskQueue: suite.workers.taskQueue,
      workflowId,
      args: [input],
      signal: volumeExtendedSignal,
      signalArgs: [],
    });
    await expect.poll(() => fakes.calls.includes('resizeDisk'), { timeout: 10_000 }).toBe(true);
    size = 4;
    await handle.signal(volumeExtendedSignal);
    release();
    const result = await handle.result();
    expect(result.size).toBe(4);
    const resizes = fakes.log.filter((c) => c.name === 'resizeDisk').map((c) => (c.input as { sizeGb: number }).sizeGb);
    expect(resizes).toEqual([2, 4]);
    expect(fakes.inputOf('recordVolumeSize')).toMatchObject({ size: 4 });
  });
});
