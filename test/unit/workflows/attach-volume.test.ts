/**
 * AttachVolume alone: the real workflow with fake activities (test/unit/support), every forward
 * step failing in turn — each rolls back exactly what was done, newest first — and a compensation
 * that cannot finish. The real-stack tests (test/attach-volume.test.ts) prove the same on
 * PostgreSQL, libvirt and the volume service.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { attachProgressQuery, reservationUpdate, type AttachResult, type AttachVolumeInput, type AttachVolumeWorkflow } from '../../../src/domain/contracts/attach-volume.ts';
import { tetherFakes, type FakeWorld, type TetherFakes } from '../support/fakes.ts';
import { useFakeWorkers } from '../support/fake-suite.ts';

const suite = useFakeWorkers();

/** The forward activities of a successful attach, in order. */
const FORWARD = ['isEarlierOperationRunning', 'validateAttach', 'takeGeneration', 'reserveDeviceName', 'reserveVolume', 'initializeConnection', 'attachDisk', 'completeAttachment', 'markBdmAttached'];

function request(): AttachVolumeInput {
  return { instanceUuid: suite.workers.instanceUuid, volumeId: randomUUID(), device: null, tag: 'data', deleteOnTermination: false, diskBus: null, deviceType: null };
}

/** Runs one attach to its end with `fakes`; returns its result or its failure, and its final state. */
async function attach(fakes: TetherFakes, input = request()) {
  const { handle, state, ...outcome } = await suite.workers.run<AttachResult>('attachVolume', `attach-${input.instanceUuid}-${input.volumeId}`, fakes, input);
  const progress = await handle.query(attachProgressQuery);
  return { ...outcome, progress, state: await state() };
}

describe('attachVolume with fake activities', () => {
  it('attaches: every forward step once, in order, no compensation', async () => {
    const fakes = tetherFakes();
    const { result, failure, state, progress } = await attach(fakes);
    expect(failure).toBeNull();
    expect(result).toMatchObject({ device: '/dev/sdb', attachmentId: 'att-1', tag: 'data', hostAttached: true });
    expect(fakes.calls).toEqual(FORWARD);
    expect(state).toBe('attached');
    expect(progress.steps.map((s) => [s.step, s.status])).toEqual([
      ['awaitEarlierOperation', 'completed'],
      ['validate', 'completed'],
      ['takeGeneration', 'completed'],
      ['reserveDeviceName', 'completed'],
      ['reserveVolume', 'completed'],
      ['getHostConnector', 'completed'],
      ['initializeConnection', 'completed'],
      ['attachDisk', 'completed'],
      ['completeAttachment', 'completed'],
    ]);
  });

  // [the activity that fails, the step it belongs to, the compensations that must run, newest first]
  const cases: [string, string, string[]][] = [
    ['validateAttach', 'validate', []],
    ['reserveDeviceName', 'reserveDeviceName', ['destroyBdm']],
    ['reserveVolume', 'reserveVolume', ['deleteAttachment', 'destroyBdm']],
    ['initializeConnection', 'initializeConnection', ['deleteAttachment', 'destroyBdm']],
    ['attachDisk', 'attachDisk', ['detachDisk', 'deleteAttachment', 'destroyBdm']],
    ['completeAttachment', 'completeAttachment', ['detachDisk', 'deleteAttachment', 'destroyBdm']],
    ['markBdmAttached', 'completeAttachment', ['detachDisk', 'deleteAttachment', 'destroyBdm']],
  ];

  it.each(cases)('%s fails: rolls back %j, state rolled-back, the reason names the step', async (activity, step, compensations) => {
    const fakes = tetherFakes().failAt(activity as never);
    const { failure, state, progress } = await attach(fakes);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure!.message).toMatch(new RegExp(`failed at step ${step}: fake ${activity} failed \\(everything was rolled back\\)$`));
    expect((failure as ApplicationFailure).type).toBe('InjectedFault');
    expect((failure as ApplicationFailure).details).toEqual([{ step, rolledBack: true }]);
    expect(fakes.callsAfter(activity as never)).toEqual(compensations);
    expect(fakes.calls.slice(0, fakes.calls.indexOf(activity) + 1)).toEqual(FORWARD.slice(0, FORWARD.indexOf(activity) + 1));
    expect(state).toBe('rolled-back');
    expect(progress.error).toEqual({ type: 'InjectedFault', message: `fake ${activity} failed` });
    expect(progress.steps.filter((s) => s.status === 'compensated').map((s) => s.step)).toEqual(compensations);
    if (compensations.includes('destroyBdm')) {
      // the BDM's compensation reports the failure (the .error notification) with the step it happened at
      expect(fakes.inputOf('destroyBdm')).toMatchObject({ fault: { type: 'InjectedFault', step } });
    }
  });

  it('an agent older than connector-with-device-name: the connector in its own step, whose failure rolls back', async () => {
    const ok = tetherFakes({ oldAgent: true });
    expect((await attach(ok)).failure).toBeNull();
    expect(ok.calls).toEqual([...FORWARD.slice(0, 5), 'getHostConnector', ...FORWARD.slice(5)]);

    const fakes = tetherFakes({ oldAgent: true }).failAt('getHostConnector');
    const { failure, state } = await attach(fakes);
    expect(failure!.message).toMatch(/failed at step getHostConnector/);
    expect(fakes.callsAfter('getHostConnector')).toEqual(['deleteAttachment', 'destroyBdm']);
    expect(state).toBe('rolled-back');
  });

  it('a compensation that cannot finish stops the rollback there: state failed, what is left agrees with itself', async () => {
    const fakes = tetherFakes().failAt('attachDisk').failAt('detachDisk');
    const { failure, state, progress } = await attach(fakes);
    expect(failure!.message).toMatch(/failed at step attachDisk: fake attachDisk failed \(the rollback could not finish and will need a retry\)$/);
    expect((failure as ApplicationFailure).details).toEqual([{ step: 'attachDisk', rolledBack: false }]);
    // the disk may still be there: its attachment and BDM stay
    expect(fakes.callsAfter('attachDisk')).toEqual(['detachDisk']);
    expect(state).toBe('failed');
    expect(progress.steps.at(-1)).toMatchObject({ step: 'detachDisk', status: 'failed' });
  });

  it('a shelved-offloaded instance: a BDM and a reservation, no host asked; a failed reservation rolls both back', async () => {
    const ok = tetherFakes({ shelvedOffloaded: true });
    const done = await attach(ok);
    expect(done.result).toMatchObject({ device: null, hostAttached: false });
    expect(ok.calls).toEqual(['isEarlierOperationRunning', 'validateAttach', 'takeGeneration', 'createShelvedBdm', 'reserveVolume']);

    const fakes = tetherFakes({ shelvedOffloaded: true }).failAt('reserveVolume');
    const { failure, state } = await attach(fakes);
    expect(failure!.message).toMatch(/failed at step reserveVolume/);
    expect(fakes.callsAfter('reserveVolume')).toEqual(['deleteAttachment', 'destroyBdm']);
    expect(state).toBe('rolled-back');

    const bdmFails = tetherFakes({ shelvedOffloaded: true }).failAt('createShelvedBdm');
    expect((await attach(bdmFails)).failure!.message).toMatch(/failed at step createBdm/);
    expect(bdmFails.callsAfter('createShelvedBdm')).toEqual(['destroyBdm']);
  });

  it('waits for an earlier detach of the pair (a heartbeating activity) only when one runs', async () => {
    const fakes = tetherFakes({ earlierOperation: true } satisfies FakeWorld);
    expect((await attach(fakes)).failure).toBeNull();
    expect(fakes.calls.slice(0, 3)).toEqual(['isEarlierOperationRunning', 'awaitEarlierOperation', 'validateAttach']);
  });

  it('the reservation update answers with the reservation, or, refused, only once the rollback has finished', async () => {
    for (const failing of [null, 'reserveVolume'] as const) {
      const fakes = failing ? tetherFakes().failAt(failing) : tetherFakes();
      const input = request();
      const workflowId = `attach-${input.instanceUuid}-${input.volumeId}`;
      suite.workers.use(workflowId, fakes);
      {
        const startWorkflowOperation = new WithStartWorkflowOperation<AttachVolumeWorkflow>('attachVolume', {
          workflowId,
          taskQueue: suite.workers.taskQueue,
          workflowIdConflictPolicy: 'USE_EXISTING',
          args: [input],
        });
        const answer = await suite.env.client.workflow.executeUpdateWithStart(reservationUpdate, { startWorkflowOperation }).then(
          (reservation) => ({ reservation, calledBefore: [...fakes.calls] }),
          (err: unknown) => ({ error: err as Error, calledBefore: [...fakes.calls] }),
        );
        if (failing === null) {
          expect(answer).toMatchObject({ reservation: { device: '/dev/sdb', attachmentId: 'att-1', instanceUuid: input.instanceUuid } });
        } else {
          expect('error' in answer && (answer.error.cause as ApplicationFailure).type).toBe('InjectedFault');
          expect(answer.calledBefore.slice(-2)).toEqual(['deleteAttachment', 'destroyBdm']);
        }
        await (await startWorkflowOperation.workflowHandle()).result().catch(() => undefined);
      }
    }
  });
});
