/**
 * The attach's answer (Nova's POST os-volume_attachments): update-with-start of the AttachVolume
 * workflow's `reservation` update, bounded in time.
 *
 * A Temporal slow to answer (an overloaded frontend, a control worker far behind) must never turn
 * the POST into a 500, nor hold the connection past the API's connection timeout. So the wait has a
 * budget (`TETHER_ATTACH_ANSWER_WAIT_MS`). When it runs out, or Temporal answers with its own RPC
 * deadline or an unavailable frontend:
 *   - the reservation is read back from the database by the workflow id (the BDM the run made
 *     carries it as operation id, with the device and the attachment id once the volume is
 *     reserved): found, the answer is the one the update would have given;
 *   - not found, the answer is a 503 with Retry-After (TetherError `AttachNotConfirmed`). The same
 *     request, retried, joins the same run (the workflow id is the pair's, conflict policy
 *     USE_EXISTING) and, through this process, the same update: the 503's update id is remembered
 *     (UnconfirmedAttaches) and the retry sends it again, so Temporal deduplicates it. A retried
 *     POST never attaches twice and does not pile up updates on the run. The id cannot be one fixed
 *     string: update-with-start on a pair whose last run is closed answers a matching id with that
 *     closed run's outcome instead of starting a new run (a second attach after a detach would get
 *     the old reservation); a request that is no retry gets a new id.
 *   - a retry that comes after the run has finished (the attach went through between the 503 and
 *     the retry) would meet Nova's "already attached" refusal: this process remembers the attaches
 *     it answered 503 for (UnconfirmedAttaches, 15 min), and the first retry of one gets the
 *     reservation read back instead. Seen in the chaos concurrent run at 500 attaches: 2 of 500.
 *     A retry that reaches another API process still gets the refusal (never a second attach).
 */
import { isGrpcServiceError, ServiceError, WorkflowUpdateRPCTimeoutOrCancelledError, type Client, type WithStartWorkflowOperation, type WorkflowHandle } from '@temporalio/client';
import { TetherError } from '../errors.ts';
import { reservationUpdate, type AttachReservation, type AttachVolumeWorkflow } from '../domain/contracts/attach-volume.ts';
import type { BlockDeviceMapping } from '../domain/types.ts';

/** How long the POST waits for the reservation, and what a 503 tells the client. */
export interface ReservationWait {
  budgetMs: number;
  retryAfterSeconds: number;
}

export const DEFAULT_RESERVATION_WAIT: ReservationWait = { budgetMs: 30_000, retryAfterSeconds: 5 };

/** gRPC's CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and UNAVAILABLE (@grpc/grpc-js `status`, not a dependency of tether's own). */
const SLOW_GRPC_CODES = new Set([1, 4, 8, 14]);

/** gRPC's FAILED_PRECONDITION, and what it says when the run's workflow task is being retried. */
const FAILED_PRECONDITION = 9;
const TASK_IN_FAILED_STATE = /workflow task in failed state/i;

/**
 * Temporal did not answer in time, or could not take the call now: worth a retry, not a 500. That
 * includes an update refused while the run's workflow task is being retried (FAILED_PRECONDITION
 * "Workflow Task in failed state": a task that timed out on a loaded worker; seen in the chaos
 * concurrent run at 500 attaches) — the next attempt of the task clears it.
 */
export function isTemporalSlow(err: unknown): boolean {
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) return true;
  const grpc = err instanceof ServiceError ? err.cause : err;
  if (!isGrpcServiceError(grpc)) return false;
  return SLOW_GRPC_CODES.has(grpc.code) || (grpc.code === FAILED_PRECONDITION && TASK_IN_FAILED_STATE.test(`${grpc.message} ${grpc.details}`));
}

/** The reservation a run recorded on its BDM (operation id = the workflow id), once the volume is reserved. */
export function reservationOnBdm(bdm: BlockDeviceMapping | null, workflowId: string): AttachReservation | null {
  if (!bdm || bdm.operationId !== workflowId || !bdm.attachmentId || !bdm.volumeId) return null;
  return {
    bdmUuid: bdm.uuid,
    device: bdm.deviceName,
    attachmentId: bdm.attachmentId,
    instanceUuid: bdm.instanceUuid,
    volumeId: bdm.volumeId,
    tag: bdm.tag,
    deleteOnTermination: bdm.deleteOnTermination,
  };
}

/** The attaches (by workflow id) this process answered 503 for, with their update id: a retry within `ttlMs` is recognised. */
export class UnconfirmedAttaches {
  private readonly until = new Map<string, { until: number; updateId: string }>();

  constructor(
    private readonly ttlMs = 15 * 60_000,
    private readonly now: () => number = Date.now,
    private readonly max = 100_000,
  ) {}

  add(workflowId: string, updateId: string): void {
    const now = this.now();
    if (this.until.size >= this.max) {
      for (const [id, t] of this.until) if (t.until < now) this.until.delete(id);
      // still full: the oldest go first (a Map iterates in insertion order)
      for (const id of this.until.keys()) {
        if (this.until.size < this.max) break;
        this.until.delete(id);
      }
    }
    this.until.delete(workflowId);
    this.until.set(workflowId, { until: now + this.ttlMs, updateId });
  }

  /** The update id of the 503 answered for `workflowId` within the TTL (a retry sends it again). */
  updateIdOf(workflowId: string): string | undefined {
    const t = this.until.get(workflowId);
    return t && t.until >= this.now() ? t.updateId : undefined;
  }

  /** Whether `workflowId` was answered 503 within the TTL; forgets it (one retry is recognised, not every later POST). */
  take(workflowId: string): boolean {
    const known = this.updateIdOf(workflowId) !== undefined;
    this.until.delete(workflowId);
    return known;
  }
}

const registries = new WeakMap<object, UnconfirmedAttaches>();

/** The registry of one service's dependencies (every `as(caller)` copy of a service shares them). */
export function unconfirmedAttachesOf(owner: object): UnconfirmedAttaches {
  let r = registries.get(owner);
  if (!r) registries.set(owner, (r = new UnconfirmedAttaches()));
  return r;
}

export interface ReservationRequest {
  client: Client;
  operation: WithStartWorkflowOperation<AttachVolumeWorkflow>;
  workflowId: string;
  /** The update's id: a new one, or the one of the 503 this request retries (UnconfirmedAttaches.updateIdOf). */
  updateId: string;
  /** The reservation as the database has it now (reservationOnBdm of the pair's live BDM), or null. */
  readBack: () => Promise<AttachReservation | null>;
  wait: ReservationWait;
  /** What the 503 names ("the attach of volume v to server s"). */
  what: string;
  /** Where a 503 is remembered, so that a retry after the run finished gets the reservation. */
  unconfirmed?: UnconfirmedAttaches;
}

/** Resolves after `ms` with `value`; the timer does not keep the process alive. */
function after<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(resolve, ms, value).unref());
}

/**
 * Update-with-start of the reservation within the budget: the reservation and the run's handle,
 * or the TetherError of a refusal, or `AttachNotConfirmed` (503) when Temporal was too slow and the
 * database has no reservation of this run yet. Any other failure is thrown as it came.
 */
export async function reserveWithStart(req: ReservationRequest): Promise<{ reservation: AttachReservation; handle: WorkflowHandle }> {
  const controller = new AbortController();
  const timedOut = Symbol('timed out');
  const update = req.client.withAbortSignal(controller.signal, () =>
    req.client.workflow.executeUpdateWithStart(reservationUpdate, { startWorkflowOperation: req.operation, updateId: req.updateId }),
  );
  // Ends with the race's loser too: nothing left unhandled when the budget wins.
  update.catch(() => undefined);
  try {
    const reservation = await Promise.race([update, after(req.wait.budgetMs, timedOut)]);
    if (reservation !== timedOut) return { reservation, handle: await req.operation.workflowHandle() };
    controller.abort();
  } catch (err) {
    if (!isTemporalSlow(err)) throw err;
  }
  const known = await req.readBack();
  if (known) return { reservation: known, handle: req.client.workflow.getHandle(req.workflowId) };
  req.unconfirmed?.add(req.workflowId, req.updateId);
  throw new TetherError(
    'AttachNotConfirmed',
    `Temporal did not confirm ${req.what} within ${Math.round(req.wait.budgetMs / 1000)} s; it may still go through. Retry the same request: it joins the attach in flight.`,
    { retryAfterSeconds: req.wait.retryAfterSeconds },
  );
}
