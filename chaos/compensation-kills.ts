/**
 * Kills inside compensations: the attach or detach is made to fail at a chosen step (a one-shot
 * failure point, faults/pause.ts `<step>.<phase>.fail`: no restart with TETHER_FAULTS), its saga
 * rolls back, and the runner pauses the rollback at one compensation's fault point, SIGKILLs the
 * process running it (or Temporal, PostgreSQL, libvirtd), restarts it and requires the rollback to
 * finish: the workflow FAILED with TetherState `rolled-back` (never `failed`), the pair back where it
 * was before the operation (an attach: absent everywhere; a detach: attached everywhere), the checker
 * clean, and tether still working afterwards.
 *
 *   attach, failed at completeAttachment before → compensations detachDisk (compute agent),
 *     deleteAttachment, destroyBdm (control plane)
 *   detach, failed at detachDisk after (the disk is gone) → compensations reattachDisk (the host's
 *     attachDisk points, compute agent), rollDetaching (control plane)
 *
 * Phases as in the forward matrix (chaos/kills.ts): before (paused at the compensation's `before`
 * check), during (paused at its `after` check; with only a `before` check: released, then killed
 * 0–30 ms later), after (the progress query shows it `compensated`; killed 0–50 ms later).
 */
import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance } from '../src/domain/types.ts';
import { failPointFile } from '../faults/pause.ts';
import {
  apiAttach,
  apiDetach,
  attachAndWait,
  attachWorkflowId,
  convergePair,
  describeAnswer,
  detachWorkflowId,
  newVolume,
  PausePoint,
  progressOf,
  result,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import type { Phase } from './kills.ts';
import type { CaseResult } from './report.ts';
import type { Target } from './stack.ts';

/** A compensation: its name in the progress query, the fault point the runner pauses at, what runs it. */
export interface CompensationPoint {
  op: 'attach' | 'detach';
  /** The compensation's step in the progress query. */
  compensation: string;
  /** The fault-point name its activity checks (the host's attachDisk for reattachDisk). */
  checkName: string;
  checks: ReadonlyArray<'before' | 'after'>;
  /** The process its activity runs in. */
  runner: 'control-plane' | 'compute-agent';
}

/** Where each operation is made to fail so that its compensations run. */
export const FAILURE_AT: Record<'attach' | 'detach', { step: string; phase: 'before' | 'after'; why: string }> = {
  attach: { step: 'completeAttachment', phase: 'before', why: 'the disk is attached, the attachment not completed' },
  detach: { step: 'detachDisk', phase: 'after', why: 'the disk left the domain' },
};

export const COMPENSATION_POINTS: readonly CompensationPoint[] = [
  { op: 'attach', compensation: 'detachDisk', checkName: 'detachDisk', checks: ['before', 'after'], runner: 'compute-agent' },
  { op: 'attach', compensation: 'deleteAttachment', checkName: 'deleteAttachment', checks: ['before'], runner: 'control-plane' },
  { op: 'attach', compensation: 'destroyBdm', checkName: 'destroyBdm', checks: ['before'], runner: 'control-plane' },
  { op: 'detach', compensation: 'reattachDisk', checkName: 'attachDisk', checks: ['before', 'after'], runner: 'compute-agent' },
  { op: 'detach', compensation: 'rollDetaching', checkName: 'rollDetaching', checks: ['before', 'after'], runner: 'control-plane' },
];

export interface CompensationKillCase {
  point: CompensationPoint;
  phase: Phase;
  target: Target;
}

export function compensationCaseName(c: CompensationKillCase): string {
  return `kill ${c.point.op} compensation ${c.point.compensation} ${c.phase} ${c.target}`;
}

/** Every compensation × before/during/after × (the process running it, Temporal, PostgreSQL, and libvirtd for host steps). */
export function compensationMatrix(): CompensationKillCase[] {
  const cases: CompensationKillCase[] = [];
  for (const point of COMPENSATION_POINTS) {
    const targets: Target[] = [point.runner, 'temporal', 'postgres', ...(point.runner === 'compute-agent' ? (['libvirtd'] as const) : [])];
    for (const phase of ['before', 'during', 'after'] as const) for (const target of targets) cases.push({ point, phase, target });
  }
  return cases;
}

export async function runCompensationKill(h: Harness, c: CompensationKillCase, run: number, server: Instance): Promise<CaseResult> {
  const scenario = compensationCaseName(c);
  const notes: string[] = [];
  const why = h.stack.cannotKill(c.target);
  if (why) return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: [why] });
  const { op } = c.point;

  const volume = await newVolume(h, `chaos-comp-${op}-${c.point.compensation}-${c.phase}-${c.target}`.slice(0, 60));
  if (op === 'detach') await attachAndWait(h, server, volume);
  const watchedId = op === 'attach' ? attachWorkflowId(server.uuid, volume.id) : detachWorkflowId(server.uuid, volume.id);

  // The pause point inside the compensation, or the progress query.
  const pauseAt: 'before' | 'after' | undefined =
    c.phase === 'before' ? 'before' : c.phase === 'during' ? (c.point.checks.includes('after') ? 'after' : 'before') : undefined;
  const thenDelayMs = c.phase === 'during' && pauseAt === 'before' ? h.rnd.int(0, 30) : undefined;
  const point = pauseAt ? new PausePoint(h.stack.pauseDir, c.point.checkName, pauseAt) : undefined;
  await point?.arm();
  const failure = FAILURE_AT[op];
  const failFile = failPointFile(h.stack.pauseDir, failure.step, failure.phase);
  await fsp.writeFile(failFile, '');
  notes.push(`${op} made to fail at ${failure.step} ${failure.phase} (${failure.why})`);

  let answer: HttpAnswer | HttpFailure | undefined;
  const request = (op === 'attach' ? apiAttach(h, server, volume) : apiDetach(h, server, volume)).then((a) => (answer = a));

  let triggered = false;
  let killedAt = 0;
  let releaseAfterRestart = false;
  try {
    if (point) {
      triggered = await point.waitClaimed(90_000);
      if (!triggered) notes.push(`the compensation's ${c.point.checkName} ${pauseAt} point was never reached${answer ? ` (API: ${describeAnswer(answer)})` : ''}`);
      if (triggered && thenDelayMs !== undefined) {
        await point.release();
        await sleep(thenDelayMs);
      }
    } else {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        const p = await progressOf(h, watchedId);
        if (p?.steps.some((s) => s.step === c.point.compensation && s.status === 'compensated')) {
          triggered = true;
          break;
        }
        const closed = await h.stack.client.workflow.getHandle(watchedId).describe().then((d) => d.status.name !== 'RUNNING', () => false);
        if (closed) break;
        await sleep(10);
      }
      if (!triggered) notes.push(`the workflow never showed ${c.point.compensation} compensated; killed anyway`);
      await sleep(h.rnd.int(0, 50));
    }
    releaseAfterRestart = point !== undefined && h.rnd.bool();
    const heldBy = point?.claimedByPid;
    killedAt = Date.now();
    await h.stack.kill(c.target);
    notes.push(`killed ${c.target}${heldBy ? ` (compensation held in pid ${heldBy})` : ''}${point ? `, release ${releaseAfterRestart ? 'after' : 'before'} restart` : ''}`);
    if (!releaseAfterRestart) await point?.release();
    await h.stack.restart(c.target);
    if (releaseAfterRestart) await point?.release();
  } finally {
    await point?.release();
    // an unused failure point must not fail a later case
    if (await fsp.rm(failFile).then(() => true, () => false)) notes.push(`the ${failure.step} ${failure.phase} failure point was never reached`);
  }

  return result(h, scenario, run, {
    triggered,
    ...(await convergePair(h, { op, server, volume, watchedId, request, answer: () => answer, since: killedAt, expect: 'rolled-back', notes })),
  });
}
