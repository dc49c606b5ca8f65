/**
 * ForceDetachVolume alone, with fake activities: a host that answers detaches the disk and is not
 * fenced; a host forced down, or one that does not answer in time, is fenced — after the BDM is gone
 * and before the attachment is deleted (the volume is released only once the host is disconnected or
 * fenced); a host that refuses for good, or a failure before it, rolls back and keeps the volume
 * attached. The real-stack tests are test/force-detach.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ApplicationFailure } from '@temporalio/common';
import { forceDetachProgressQuery, type ForceDetachResult, type ForceDetachVolumeInput } from '../../../src/domain/contracts/force-detach-volume.ts';
import { tetherFakes, type TetherFakes } from '../support/fakes.ts';
import { useFakeWorkers } from '../support/fake-suite.ts';

const suite = useFakeWorkers();

const BEFORE_HOST = ['validateForceDetach', 'takeGeneration', 'terminatePairOperations', 'beginForceDetaching', 'setBdmAttachStatus'];

async function forceDetach(fakes: TetherFakes, hostWaitSeconds = 2) {
  const input: ForceDetachVolumeInput = { instanceUuid: suite.workers.instanceUuid, volumeId: randomUUID(), hostWaitSeconds, reason: 'unit test' };
  const { handle, state, ...outcome } = await suite.workers.run<ForceDetachResult>('forceDetachVolume', `detach-${input.instanceUuid}-${input.volumeId}`, fakes, input);
  return { ...outcome, progress: await handle.query(forceDetachProgressQuery), state: await state() };
}

describe('forceDetachVolume with fake activities', () => {
  it('a host that answers detaches the disk itself: no fence, then the BDM and the attachment go', async () => {
    const fakes = tetherFakes();
    const { result, state } = await forceDetach(fakes);
    expect(result).toMatchObject({ hostDetached: true, fenceEpoch: null, host: 'fake-host', device: '/dev/sdb' });
    expect(fakes.calls).toEqual([...BEFORE_HOST, 'detachDisk', 'destroyBdm', 'deleteAttachment']);
    expect(fakes.inputOf('detachDisk')).toMatchObject({ generation: 7 });
    expect(state).toBe('detached');
  });

  it('a host forced down is not asked: the BDM goes, the host is fenced, then the attachment goes', async () => {
    const fakes = tetherFakes({ hostForcedDown: true });
    const { result } = await forceDetach(fakes);
    expect(result).toMatchObject({ hostDetached: false, fenceEpoch: 1 });
    expect(fakes.calls).toEqual([...BEFORE_HOST, 'destroyBdm', 'fenceHost', 'deleteAttachment']);
  });

  it('a host that does not answer within the wait is fenced before the attachment is released', async () => {
    const fakes = tetherFakes({ hostSilentMs: 4_000 });
    const { result, progress } = await forceDetach(fakes, 1);
    expect(result).toMatchObject({ hostDetached: false, fenceEpoch: 1 });
    expect(fakes.calls.slice(-3)).toEqual(['destroyBdm', 'fenceHost', 'deleteAttachment']);
    const step = (name: string) => progress.steps.find((s) => s.step === name)!;
    expect(step('detachDisk').status).toBe('completed');
    expect(Date.parse(step('deleteAttachment').startedAt)).toBeGreaterThanOrEqual(Date.parse(step('fenceHost').endedAt!));
  });

  it('a host that refuses for good (the guest keeps the disk) rolls back: the disk is put back, the volume stays attached', async () => {
    const fakes = tetherFakes().failAt('detachDisk', { type: 'DiskDetachTimeout' });
    const { failure, state } = await forceDetach(fakes);
    expect(failure!.message).toMatch(/failed at step detachDisk: fake detachDisk failed \(the volume stays attached\)$/);
    expect((failure as ApplicationFailure).type).toBe('DiskDetachTimeout');
    expect(fakes.callsAfter('detachDisk')).toEqual(['attachDisk', 'rollDetaching', 'setBdmAttachStatus']);
    expect(fakes.calls).not.toContain('fenceHost');
    expect(fakes.calls).not.toContain('deleteAttachment');
    expect(state).toBe('rolled-back');
  });

  it.each([
    ['validateForceDetach', []],
    ['takeGeneration', []],
    ['terminatePairOperations', []],
    ['beginForceDetaching', ['rollDetaching', 'setBdmAttachStatus']],
  ])('%s fails: %j run, nothing is released', async (activity, compensations) => {
    const fakes = tetherFakes().failAt(activity as never);
    const { failure, state } = await forceDetach(fakes);
    expect(failure!.message).toMatch(/\(the volume stays attached\)$/);
    expect(fakes.callsAfter(activity as never)).toEqual(compensations);
    expect(state).toBe('rolled-back');
  });
});
