/**
 * DetachVolume alone, with fake activities: each step failing in turn. Before the disk is gone the
 * volume goes back to in-use with its disk; after it the detach only moves forward; a compensation
 * that cannot finish stops the rollback there. The real-stack tests are test/detach-volume.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { detachProgressQuery, type DetachResult } from '../../../src/domain/contracts/detach-volume.ts';
import { tetherFakes, type TetherFakes } from '../support/fakes.ts';
import { useFakeWorkers } from '../support/fake-suite.ts';

const suite = useFakeWorkers();

const FORWARD = ['isEarlierOperationRunning', 'validateDetach', 'takeGeneration', 'beginDetaching', 'setBdmAttachStatus', 'detachDisk', 'deleteAttachment', 'destroyBdm'];

async function detach(fakes: TetherFakes) {
  const input = { instanceUuid: suite.workers.instanceUuid, volumeId: randomUUID() };
  const { handle, state, ...outcome } = await suite.workers.run<DetachResult>('detachVolume', `detach-${input.instanceUuid}-${input.volumeId}`, fakes, input);
  const progress = await handle.query(detachProgressQuery);
  return { ...outcome, progress, state: await state() };
}

describe('detachVolume with fake activities', () => {
  it('detaches: every step once, in order', async () => {
    const fakes = tetherFakes();
    const { result, state } = await detach(fakes);
    expect(result).toMatchObject({ device: '/dev/sdb', hostDetached: true });
    expect(fakes.calls).toEqual(FORWARD);
    expect(state).toBe('detached');
  });

  // [failing activity, its step, what runs after it]
  const cases: [string, string, string[]][] = [
    ['validateDetach', 'validateDetach', []],
    ['beginDetaching', 'beginDetaching', ['rollDetaching', 'setBdmAttachStatus']],
    ['setBdmAttachStatus', 'beginDetaching', ['rollDetaching', 'setBdmAttachStatus']],
    ['detachDisk', 'detachDisk', ['attachDisk', 'rollDetaching', 'setBdmAttachStatus']],
  ];

  it.each(cases)('%s fails (step %s) before the disk is gone: the compensations run, the volume stays attached', async (activity, step, compensations) => {
    // setBdmAttachStatus is a forward step and part of a compensation: only its first call fails
    const fakes = tetherFakes().failAt(activity as never, { times: 1 });
    const { failure, state, progress } = await detach(fakes);
    expect(failure!.message).toMatch(new RegExp(`^Detaching volume .* failed at step ${step}: fake ${activity} failed \\(the volume stays attached\\)$`));
    expect((failure as ApplicationFailure).details).toEqual([{ step, rolledBack: true }]);
    const failedAt = fakes.calls.indexOf(activity);
    expect(fakes.calls.slice(0, failedAt + 1)).toEqual(FORWARD.slice(0, FORWARD.indexOf(activity) + 1));
    expect(fakes.calls.slice(failedAt + 1)).toEqual(compensations);
    expect(state).toBe('rolled-back');
    expect(progress.steps.filter((s) => s.status === 'compensated').map((s) => s.step)).toEqual(
      compensations.includes('attachDisk') ? ['reattachDisk', 'rollDetaching'] : compensations.length ? ['rollDetaching'] : [],
    );
    if (compensations.length) {
      // the BDM goes back to attached, and the .error notification says where the detach failed
      expect(fakes.inputOf('setBdmAttachStatus')).toMatchObject({ attachStatus: 'attached', fault: { type: 'InjectedFault', step } });
    }
  });

  it('the disk cannot be put back: the rollback stops there, state failed, the volume is not rolled to in-use', async () => {
    const fakes = tetherFakes().failAt('detachDisk').failAt('attachDisk');
    const { failure, state } = await detach(fakes);
    expect(failure!.message).toMatch(/failed at step detachDisk: .*\(the rollback could not finish and will need a retry\)$/);
    expect((failure as ApplicationFailure).details).toEqual([{ step: 'detachDisk', rolledBack: false }]);
    expect(fakes.callsAfter('detachDisk')).toEqual(['attachDisk']);
    expect(state).toBe('failed');
  });

  it('a shelved-offloaded instance: no host step, no volume state change; only the attachment and the BDM go', async () => {
    const fakes = tetherFakes({ shelvedOffloaded: true });
    const { result } = await detach(fakes);
    expect(result).toMatchObject({ hostDetached: false });
    expect(fakes.calls).toEqual(['isEarlierOperationRunning', 'validateDetach', 'takeGeneration', 'deleteAttachment', 'destroyBdm']);
  });

  it('waits for an earlier attach of the pair only when one runs', async () => {
    const fakes = tetherFakes({ earlierOperation: true });
    await detach(fakes);
    expect(fakes.calls.slice(0, 3)).toEqual(['isEarlierOperationRunning', 'awaitEarlierOperation', 'validateDetach']);
  });
});

