/**
 * The attach's answer when Temporal is slow (src/service/attach-reservation.ts; chaos concurrent run
 * of issue 20: 21 POSTs answered 500 on the reservation update's RPC deadline, 62 held past the
 * API's connection timeout). A fake client for Temporal's failures, then the real AttachVolume
 * workflow on the unit run's Temporal with a host that holds reserveDeviceName: the POST answers
 * 503 with Retry-After within its budget, the retries join the same run and the same update, and
 * the one after the host answered gets the reservation. Nothing attached twice.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ServiceError, WithStartWorkflowOperation, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { TetherError } from '../../src/errors.ts';
import type { AttachReservation, AttachVolumeInput, AttachVolumeWorkflow } from '../../src/domain/contracts/attach-volume.ts';
import type { BlockDeviceMapping } from '../../src/domain/types.ts';
import { isTemporalSlow, reservationOnBdm, reserveWithStart, UnconfirmedAttaches, type ReservationRequest } from '../../src/service/attach-reservation.ts';
import { tetherFakes } from './support/fakes.ts';
import { useFakeWorkers } from './support/fake-suite.ts';

const WAIT = { budgetMs: 300, retryAfterSeconds: 5 };

function grpcError(code: number, message = `grpc ${code}`): Error {
  return Object.assign(new Error(message), { code, details: message, metadata: {} });
}

function operation(workflowId: string, taskQueue: string, input: AttachVolumeInput): WithStartWorkflowOperation<AttachVolumeWorkflow> {
  return new WithStartWorkflowOperation<AttachVolumeWorkflow>('attachVolume', { workflowId, taskQueue, workflowIdConflictPolicy: 'USE_EXISTING', args: [input] });
}

const RESERVED: AttachReservation = {
  bdmUuid: 'bdm-1',
  device: '/dev/sdb',
  attachmentId: 'att-1',
  instanceUuid: 'i-1',
  volumeId: 'v-1',
  tag: null,
  deleteOnTermination: false,
};

/** A client whose update-with-start does what `update` says; it records the abort signal it was given. */
function fakeClient(update: () => Promise<AttachReservation>) {
  const seen: { signal?: AbortSignal; updateId?: string } = {};
  const client = {
    withAbortSignal: (signal: AbortSignal, fn: () => Promise<unknown>) => {
      seen.signal = signal;
      return fn();
    },
    workflow: {
      executeUpdateWithStart: (_def: unknown, options: { updateId?: string }) => {
        seen.updateId = options.updateId;
        return update();
      },
      getHandle: (workflowId: string) => ({ workflowId }),
    },
  } as unknown as Client;
  return { client, seen };
}

function fakeRequest(client: Client, readBack: () => Promise<AttachReservation | null>): ReservationRequest {
  const input = { instanceUuid: 'i-1', volumeId: 'v-1', device: null, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null };
  return { client, operation: operation('attach-i-1-v-1', 'q', input), workflowId: 'attach-i-1-v-1', updateId: 'u-1', readBack, wait: WAIT, what: 'the attach of volume v-1 to server i-1' };
}

async function refusal(p: Promise<unknown>): Promise<TetherError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(TetherError);
  return err as TetherError;
}

describe('the attach answer when Temporal is slow (fake client)', () => {
  it('knows a slow Temporal from a refusal', () => {
    expect(isTemporalSlow(new WorkflowUpdateRPCTimeoutOrCancelledError('deadline', { cause: grpcError(4) }))).toBe(true);
    expect(isTemporalSlow(grpcError(4))).toBe(true);
    expect(isTemporalSlow(new ServiceError('Update-With-Start failed', { cause: grpcError(14) }))).toBe(true);
    expect(isTemporalSlow(new ServiceError('Update-With-Start failed', { cause: grpcError(3) }))).toBe(false);
    // what the server answers while the run's workflow task is retried (a task timed out on a loaded worker)
    expect(isTemporalSlow(grpcError(9, 'Unable to perform workflow execution update due to Workflow Task in failed state.'))).toBe(true);
    expect(isTemporalSlow(grpcError(9, 'some other precondition'))).toBe(false);
    expect(isTemporalSlow(new WorkflowUpdateFailedError('failed', ApplicationFailure.nonRetryable('no', 'VolumeNotAvailable')))).toBe(false);
  });

  it("the RPC's deadline error: 503 with Retry-After when the database has no reservation of the run, never a 500", async () => {
    const { client, seen } = fakeClient(() => Promise.reject(new WorkflowUpdateRPCTimeoutOrCancelledError('Workflow update call timeout or cancelled', { cause: grpcError(4) })));
    const err = await refusal(reserveWithStart(fakeRequest(client, async () => null)));
    expect(err.type).toBe('AttachNotConfirmed');
    expect(err.status).toBe(503);
    expect(err.retryAfterSeconds).toBe(5);
    expect(err.message).toMatch(/Retry the same request/);
    expect(seen.updateId).toBe('u-1');
  });

  it('a 503 is remembered for the retry, once, within its time', async () => {
    const { client } = fakeClient(() => Promise.reject(new WorkflowUpdateRPCTimeoutOrCancelledError('deadline', { cause: grpcError(4) })));
    let now = 0;
    const unconfirmed = new UnconfirmedAttaches(1_000, () => now, 2);
    await refusal(reserveWithStart({ ...fakeRequest(client, async () => null), unconfirmed }));
    // the retry sends the 503's update id again
    expect(unconfirmed.updateIdOf('attach-i-1-v-1')).toBe('u-1');
    expect(unconfirmed.take('attach-i-1-v-1')).toBe(true);
    expect(unconfirmed.take('attach-i-1-v-1')).toBe(false);
    expect(unconfirmed.updateIdOf('attach-i-1-v-1')).toBeUndefined();
    unconfirmed.add('a', 'u-a');
    now = 1_001;
    expect(unconfirmed.updateIdOf('a')).toBeUndefined();
    expect(unconfirmed.take('a')).toBe(false);
    // bounded: the oldest go when full
    unconfirmed.add('b', 'u-b');
    unconfirmed.add('c', 'u-c');
    unconfirmed.add('d', 'u-d');
    expect([unconfirmed.take('b'), unconfirmed.take('c'), unconfirmed.take('d')]).toEqual([false, true, true]);
  });

  it("the RPC's deadline error after the run reserved: the reservation read back", async () => {
    const { client } = fakeClient(() => Promise.reject(new WorkflowUpdateRPCTimeoutOrCancelledError('deadline', { cause: grpcError(4) })));
    const answer = await reserveWithStart(fakeRequest(client, async () => RESERVED));
    expect(answer.reservation).toEqual(RESERVED);
    expect(answer.handle.workflowId).toBe('attach-i-1-v-1');
  });

  it('no answer within the budget: the call is aborted and the answer is a 503', async () => {
    const { client, seen } = fakeClient(() => new Promise(() => undefined));
    const t0 = Date.now();
    const err = await refusal(reserveWithStart(fakeRequest(client, async () => null)));
    expect(err.type).toBe('AttachNotConfirmed');
    expect(Date.now() - t0).toBeLessThan(WAIT.budgetMs + 2_000);
    expect(seen.signal?.aborted).toBe(true);
  });

  it("a refusal is the workflow's own answer, not a 503", async () => {
    const refused = new WorkflowUpdateFailedError('Workflow Update failed', ApplicationFailure.nonRetryable('Invalid volume', 'VolumeNotAvailable'));
    const { client } = fakeClient(() => Promise.reject(refused));
    await expect(reserveWithStart(fakeRequest(client, async () => RESERVED))).rejects.toBe(refused);
  });

  it('reads a reservation back only from the BDM of this run, once the volume is reserved', () => {
    const bdm = { uuid: 'bdm-1', instanceUuid: 'i-1', volumeId: 'v-1', deviceName: '/dev/sdb', tag: null, deleteOnTermination: false, attachmentId: 'att-1', operationId: 'attach-i-1-v-1' } as BlockDeviceMapping;
    expect(reservationOnBdm(bdm, 'attach-i-1-v-1')).toEqual(RESERVED);
    expect(reservationOnBdm({ ...bdm, attachmentId: null }, 'attach-i-1-v-1')).toBeNull();
    expect(reservationOnBdm({ ...bdm, operationId: 'import-x' }, 'attach-i-1-v-1')).toBeNull();
    expect(reservationOnBdm(null, 'attach-i-1-v-1')).toBeNull();
  });
});

describe('the attach answer when the host is slow (AttachVolume on Temporal, fake activities)', () => {
  const suite = useFakeWorkers();

  it('503 while the host holds the reservation; retries join the same run and update; then the reservation, attached once', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const fakes = tetherFakes({ beforeReserveDeviceName: () => held });
    const input: AttachVolumeInput = { instanceUuid: suite.workers.instanceUuid, volumeId: randomUUID(), device: null, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null };
    const workflowId = `attach-${input.instanceUuid}-${input.volumeId}`;
    suite.workers.use(workflowId, fakes);
    // the database has no reservation while the host holds reserveDeviceName
    const readBack = async () => null;
    const updateId = randomUUID();
    const ask = (): ReservationRequest => ({ client: suite.env.client, operation: operation(workflowId, suite.workers.taskQueue, input), workflowId, updateId, readBack, wait: WAIT, what: 'the attach' });

    for (let attempt = 0; attempt < 2; attempt++) {
      const err = await refusal(reserveWithStart(ask()));
      expect(err.type).toBe('AttachNotConfirmed');
      expect(err.retryAfterSeconds).toBe(5);
    }
    release();
    const { reservation, handle } = await reserveWithStart({ ...ask(), wait: { ...WAIT, budgetMs: 20_000 } });
    expect(reservation).toMatchObject({ device: '/dev/sdb', attachmentId: 'att-1', volumeId: input.volumeId });
    await handle.result();

    // one run, one reservation: each step once; every POST's update answered with that reservation
    expect(fakes.calls.filter((c) => c === 'reserveDeviceName')).toHaveLength(1);
    expect(fakes.calls.filter((c) => c === 'reserveVolume')).toHaveLength(1);
    expect(fakes.calls.filter((c) => c === 'attachDisk')).toHaveLength(1);
    const history = await handle.fetchHistory();
    const accepted = (history.events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
    expect(accepted).toHaveLength(1);
    expect(accepted[0]!.workflowExecutionUpdateAcceptedEventAttributes!.acceptedRequest!.meta!.updateId).toBe(updateId);

    // a new attach of the pair once that run is closed (after a detach): a new update id starts a new
    // run — the closed run's id would get the closed run's old reservation back, and no attach
    const again = await reserveWithStart({ ...ask(), updateId: randomUUID(), wait: { ...WAIT, budgetMs: 20_000 } });
    expect(again.reservation.bdmUuid).not.toBe(reservation.bdmUuid);
    await again.handle.result();
    expect(fakes.calls.filter((c) => c === 'reserveDeviceName')).toHaveLength(2);
  });
});
