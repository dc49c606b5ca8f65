/**
 * Benchmark-only workflows: the shape of tether's attach and detach sagas with steps that do nothing,
 * to measure the floor that Temporal and the TypeScript SDK set on this machine for a saga of that
 * shape (bench/floor.ts). Local activities stand where the shipped workflows run control-plane steps as
 * local activities; `host` activities run on another task queue, one at a time, as the instance queue does.
 */
import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';

export interface FloorActivities {
  noop(step: string): Promise<string>;
}

const control = proxyLocalActivities<FloorActivities>({ startToCloseTimeout: '30s' });

function host(taskQueue: string) {
  return proxyActivities<FloorActivities>({ taskQueue, startToCloseTimeout: '30s' });
}

/** attachVolume: [look, validate] reserveDeviceName (+connector) [reserveVolume, initializeConnection] attachDisk [completeAttachment, markBdmAttached] */
export async function attachShapedNoop(hostQueue: string): Promise<void> {
  const h = host(hostQueue);
  await control.noop('isEarlierOperationRunning');
  await control.noop('validateAttach');
  await h.noop('reserveDeviceName');
  await control.noop('reserveVolume');
  await control.noop('initializeConnection');
  await h.noop('attachDisk');
  await control.noop('completeAttachment');
  await control.noop('markBdmAttached');
}

/** detachVolume: [look, validate, beginDetaching, setBdmAttachStatus] detachDisk [deleteAttachment, destroyBdm] */
export async function detachShapedNoop(hostQueue: string): Promise<void> {
  const h = host(hostQueue);
  await control.noop('isEarlierOperationRunning');
  await control.noop('validateDetach');
  await control.noop('beginDetaching');
  await control.noop('setBdmAttachStatus');
  await h.noop('detachDisk');
  await control.noop('deleteAttachment');
  await control.noop('destroyBdm');
}

/**
 * The lower bound of any durable saga of the attach's eight steps on Temporal: all of them local
 * activities of one worker, in one workflow task (no second queue, no host) — not tether's design
 * (host steps must run on the instance's host), the floor of every design.
 */
export async function allLocalNoop(): Promise<void> {
  for (const step of ['isEarlierOperationRunning', 'validateAttach', 'reserveDeviceName', 'reserveVolume', 'initializeConnection', 'attachDisk', 'completeAttachment', 'markBdmAttached']) {
    await control.noop(step);
  }
}

/** No step at all: one workflow task. */
export async function emptyNoop(): Promise<void> {}
